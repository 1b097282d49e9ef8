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


def unit(name: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # systemd keys are case-sensitive
    cp.read(DEPLOY / "systemd" / name)
    return cp


@pytest.mark.parametrize("name", ["imperium.service", "imperium-vassal@.service"])
def test_systemd_unit_is_well_formed(name: str) -> None:
    cp = unit(name)
    service = cp["Service"]
    # both speak sd_notify; systemd signals the main process alone (KillMode=mixed): an
    # instance would take a SIGTERM of its own as "reload"
    assert (service["Type"], service["NotifyAccess"], service["KillMode"]) == ("notify", "main", "mixed")
    if name == "imperium.service":
        assert service["KillSignal"] == "SIGTERM"
        assert service["ExecStart"].split()[1:3] == ["--emperor", "/etc/uwsgi/vassals"]
    else:
        assert service["KillSignal"] == "SIGQUIT"
        assert service["ExecStart"].split()[1:] == ["--ini", "/etc/uwsgi/vassals/%i.ini"]
    assert cp["Install"]["WantedBy"] == "multi-user.target"
    analyze = shutil.which("systemd-analyze")
    if analyze and os.path.isdir("/run/systemd/system"):
        out = subprocess.run([analyze, "verify", str(DEPLOY / "systemd" / name)], capture_output=True,
                             text=True)
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


def _notify_socket(path: Path):
    import socket as sk

    s = sk.socket(sk.AF_UNIX, sk.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(0.1)
    got: list[str] = []

    def messages() -> list[str]:
        while True:
            try:
                got.append(s.recv(65536).decode())
            except OSError:
                return got
    return s, messages


def test_emperor_unit_start_and_clean_stop_as_systemd_does(procs, tmp_path) -> None:
    """What systemd does with imperium.service: NOTIFY_SOCKET set, READY=1 awaited, then
    KillSignal to the main process only (KillMode=mixed): every vassal stops, exit 0."""
    from tests.conftest import IMPERIUM, descendants, pid_alive, wait_until
    from tests.integration.emperor_harness import fake_launcher

    service = unit("imperium.service")["Service"]
    sock, messages = _notify_socket(tmp_path / "notify")
    vdir = tmp_path / "vassals"
    vdir.mkdir()
    for name in ("a.ini", "b.ini"):
        (vdir / name).write_text("[uwsgi]\n")
    p = procs.start([IMPERIUM, "--emperor", str(vdir), "--binary-path", str(fake_launcher(tmp_path)),
                     "--emperor-control-socket", str(tmp_path / "ctl.sock")],
                    env={"NOTIFY_SOCKET": str(tmp_path / "notify")})
    wait_until(lambda: any("READY=1" in m for m in messages()), 15, message="READY=1")
    wait_until(lambda: any("governing 2 vassals (2 ready" in m for m in messages()), 15,
               message="STATUS with both vassals")
    family = descendants(p.pid)
    assert len(family) >= 3  # the fork server and two vassals
    os.kill(p.pid, getattr(__import__("signal"), service["KillSignal"]))
    assert p.wait(timeout=int(service["TimeoutStopSec"])) == 0
    assert any("STOPPING=1" in m for m in messages())
    wait_until(lambda: not [x for x in family if pid_alive(x)], 5, message="no vassal left")
    sock.close()


def test_vassal_unit_ready_reload_stop_as_systemd_does(procs, tmp_path) -> None:
    """imperium-vassal@.service: READY=1 from the master, RELOADING=1 then READY=1 again on
    ExecReload (SIGHUP: same pid), STOPPING=1 and exit 0 on its KillSignal."""
    import signal as sg

    from tests.conftest import IMPERIUM, free_port, wait_until
    from tests.fixtures.instance_helpers import APPS, get

    service = unit("imperium-vassal@.service")["Service"]
    sock, messages = _notify_socket(tmp_path / "notify")
    port = free_port()
    ini = tmp_path / "hello.ini"
    ini.write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:{port}\nwsgi-file = {APPS / 'hello.py'}\n"
                   "master = true\nprocesses = 2\n")
    p = procs.start([IMPERIUM, "--ini", str(ini)], env={"NOTIFY_SOCKET": str(tmp_path / "notify")})
    wait_until(lambda: any("READY=1" in m and "STATUS=uWSGI is ready" in m for m in messages()), 15,
               message="READY=1")
    assert get(port)[0] == 200
    mark = len(messages())
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    os.kill(p.pid, sg.SIGHUP)
    wait_until(lambda: any("RELOADING=1" in m for m in messages()[mark:]), 15, message="RELOADING=1")
    wait_until(lambda: any("READY=1" in m for m in messages()[mark:]), 30, message="READY=1 again")
    assert p.poll() is None and get(port)[0] == 200
    os.kill(p.pid, getattr(sg, service["KillSignal"]))
    assert p.wait(timeout=int(service["TimeoutStopSec"])) == 0
    assert any("STOPPING=1" in m for m in messages())
    sock.close()
