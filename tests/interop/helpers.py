"""Helpers for the interop tests: real nginx, real uWSGI, HTTP clients, backends.

Every process goes through a ``Procs`` (the ``procs`` fixture, or a module-scoped one made
here with the same class), so that nothing outlives the test that started it.
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests import procstat
from tests.conftest import IMPERIUM, UWSGI_CORE, Procs, need_service, port_open, wait_until

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
NGINX = "/usr/sbin/nginx"
UWSGI_PARAMS = "/etc/nginx/uwsgi_params"
PYTHON3_PLUGIN = "/usr/lib/uwsgi/plugins/python3_plugin.so"
#: the binary tested as "imperium". Point INTEROP_VASSAL_BINARY at a wrapper of the real
#: uWSGI (`exec uwsgi-core --plugin python3 "$@"`) and every interop test must pass: that
#: is how the tests themselves are checked against the reference implementation.
VASSAL_BINARY = os.environ.get("INTEROP_VASSAL_BINARY", IMPERIUM)


def need_nginx() -> None:
    need_service("nginx", os.access(NGINX, os.X_OK) and os.path.exists(UWSGI_PARAMS),
                 f"{NGINX} with {UWSGI_PARAMS} (Debian nginx)")


def need_uwsgi() -> None:
    need_service("uwsgi", os.access(UWSGI_CORE, os.X_OK) and os.path.exists(PYTHON3_PLUGIN),
                 f"{UWSGI_CORE} with its python3 plugin (Debian uwsgi-core, "
                 "uwsgi-plugin-python3)")


@dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


def http_request(port: int, method: str = "GET", path: str = "/", body: bytes | None = None,
                 headers: dict[str, str] | None = None, chunked: bool = False,
                 timeout: float = 10.0) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if chunked:
            conn.putrequest(method, path)
            for k, v in (headers or {}).items():
                conn.putheader(k, v)
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            data = body or b""
            for i in range(0, len(data), 7000):
                piece = data[i:i + 7000]
                conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            conn.send(b"0\r\n\r\n")
        else:
            conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Response(resp.status, resp.reason, resp.getheaders(), resp.read())
    finally:
        conn.close()


def status_of(port: int, path: str = "/") -> int | None:
    try:
        return http_request(port, path=path, timeout=2).status
    except (OSError, http.client.HTTPException):
        return None


def children(pid: int) -> set[int]:
    """Live (non-zombie) direct children of ``pid``: a master's workers."""
    return {p.pid for p in procstat.table().values() if p.ppid == pid and not p.exited}


# --- backends ---------------------------------------------------------------------------


def backend_argv(kind: str, ini: Path) -> list[str]:
    """The command line of a backend reading ``ini``: ours, or the real uWSGI."""
    if kind == "imperium":
        return [VASSAL_BINARY, "--ini", str(ini)]
    if kind == "uwsgi":
        return [UWSGI_CORE, "--plugin", "python3", "--ini", str(ini)]
    raise ValueError(kind)


# --- nginx ------------------------------------------------------------------------------


def nginx_conf(prefix: Path, servers: dict[int, str]) -> str:
    """An nginx.conf whose server on each port passes everything to one uwsgi upstream.

    ``servers`` maps a listen port to a ``uwsgi_pass`` target (``127.0.0.1:P`` or
    ``unix:/path``).
    """
    user = "user root;\n" if os.geteuid() == 0 else ""
    blocks = "".join(f"""
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        location / {{
            include {UWSGI_PARAMS};
            uwsgi_pass {target};
        }}
        location /tls/ {{
            # what a TLS-terminating nginx adds: the app must see an https URL scheme
            include {UWSGI_PARAMS};
            uwsgi_param HTTPS on;
            uwsgi_pass {target};
        }}
    }}""" for port, target in servers.items())
    return f"""{user}daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    client_max_body_size 16m;
{blocks}
}}
"""


def start_nginx(procs: Procs, prefix: Path, servers: dict[int, str]) -> subprocess.Popen:
    need_nginx()
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_conf(prefix, servers))
    # -e: our own error log from the first line on (Debian's default is /var/log/nginx)
    argv = [NGINX, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)]
    check = subprocess.run([*argv, "-t"], capture_output=True, text=True)
    assert check.returncode == 0, f"nginx -t refused our config:\n{check.stderr}"
    p = procs.start(argv)
    for port in servers:
        wait_until(lambda port=port: port_open(port) or p.poll() is not None, 10,
                   message=f"nginx listening on {port}")
    assert p.poll() is None, f"nginx exited:\n{(prefix / 'error.log').read_text()}"
    return p


def start_twins(procs: Procs, base: Path, name: str, body: str) -> dict[str, tuple[int, subprocess.Popen, Path]]:
    """Imperium and the real uWSGI on the same ini ``body`` ({port} and {dir} filled per
    server, {base} is ``base``), each in its own directory: kind -> (port, process, dir)."""
    from tests.conftest import free_port

    need_uwsgi()
    out = {}
    for kind in ("imperium", "uwsgi"):
        d = base / f"{name}-{kind}"
        d.mkdir()
        port = free_port()
        (d / "s.ini").write_text("[uwsgi]\n" + body.format(port=port, dir=d, base=base))
        out[kind] = (port, procs.start(backend_argv(kind, d / "s.ini"), cwd=d), d)
    for kind, (port, p, _d) in out.items():
        wait_until(lambda p=p, port=port: p.poll() is not None or port_open(port), 20, message=f"{kind} {name}")
        assert p.poll() is None, f"{kind} exited:\n{procs.output(p)[-3000:]}"
    return out


def copy_app(name: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / name
    shutil.copy(APPS / name, target)
    return target


def twin_emperor(procs: Procs, tmp_path: Path, emperor: str, vassal: str,
                 *extra: str) -> tuple[subprocess.Popen, Path, int]:
    """An emperor for a twin test: uWSGI's (``uwsgi-core``) or ours, with uwsgi-core or our
    vassals, on a fresh vassal dir. Returns (process, vassal dir, stats port)."""
    from tests.conftest import free_port

    if "uwsgi" in (emperor, vassal):
        need_service("uwsgi", os.access(UWSGI_CORE, os.X_OK) and os.path.exists(PYTHON3_PLUGIN),
                     f"{UWSGI_CORE} with the python3 plugin")
    vdir = tmp_path / "vassals"
    vdir.mkdir()
    stats = free_port()
    argv = [UWSGI_CORE if emperor == "uwsgi" else IMPERIUM, "--emperor", str(vdir),
            "--emperor-freq", "1", "--emperor-stats", f"127.0.0.1:{stats}", *extra]
    if "uwsgi" in (emperor, vassal):
        argv += ["--binary-path", UWSGI_CORE if vassal == "uwsgi" else IMPERIUM]
    proc = procs.start(argv, cwd=tmp_path)
    wait_until(lambda: port_open(stats) or proc.poll() is not None, 15, message="the emperor")
    assert proc.poll() is None, procs.output(proc)
    return proc, vdir, stats
