"""The files in deploy/ are what users copy: check them with the real tools that read them."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.interop.helpers import NGINX, UWSGI_PARAMS, need_nginx

DEPLOY = ROOT / "deploy"
VASSALS = DEPLOY / "examples" / "vassals"


def test_nginx_snippet_is_accepted_by_nginx(tmp_path: Path) -> None:
    need_nginx()
    # `include uwsgi_params` is relative to the main config's directory, as in /etc/nginx
    shutil.copy(UWSGI_PARAMS, tmp_path / "uwsgi_params")
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"""daemon off;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log;
events {{}}
http {{
    client_body_temp_path {tmp_path}/cb; proxy_temp_path {tmp_path}/p;
    fastcgi_temp_path {tmp_path}/f; uwsgi_temp_path {tmp_path}/u; scgi_temp_path {tmp_path}/s;
    access_log off;
    include /etc/nginx/mime.types;
    include {DEPLOY / "nginx" / "imperium.conf"};
}}
""")
    out = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"),
                          "-c", str(conf)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "uwsgi_pass imperium_api" in (DEPLOY / "nginx" / "imperium.conf").read_text()


def test_systemd_unit_is_well_formed() -> None:
    unit = DEPLOY / "systemd" / "imperium.service"
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # systemd keys are case-sensitive
    cp.read(unit)
    assert cp["Service"]["KillSignal"] == "SIGQUIT"
    assert cp["Service"]["ExecStart"].split()[1:3] == ["--emperor", "/etc/uwsgi/vassals"]
    assert cp["Install"]["WantedBy"] == "multi-user.target"
    analyze = shutil.which("systemd-analyze")
    if analyze and os.path.isdir("/run/systemd/system"):
        out = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
        # the ExecStart binary does not exist on a test box; anything else is a real error
        errors = [ln for ln in out.stderr.splitlines() if "/opt/imperium" not in ln]
        assert not errors, out.stderr


@pytest.mark.parametrize("ini", sorted(p.name for p in VASSALS.glob("*.ini")))
def test_example_vassals_parse_and_point_at_real_files(ini: str) -> None:
    from vassal.config import load_config

    config = load_config(["--ini", str(VASSALS / ini)])
    wsgi_file = Path(config.get("wsgi-file"))
    assert wsgi_file.is_absolute() and wsgi_file.is_file(), wsgi_file
    assert config.get("master") is True
    for sock in config.getlist("socket"):
        if "/" in sock:  # %d made the UNIX socket path absolute, next to the ini
            assert Path(sock).parent.resolve() == VASSALS.resolve()
    assert config.getlist("socket") or config.getlist("http-socket")
