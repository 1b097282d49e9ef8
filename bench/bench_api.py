"""bench_api: cache operations per second from 4 workers, Imperium against Debian's real uWSGI.

Both servers run the same app with 4 workers and the same ``cache2``. Each request runs a
loop of ``--ops`` cache calls inside the app (so the HTTP round trip is a few percent of the
time measured) and answers how many it made; 8 client threads keep every worker busy for
``--duration`` seconds per workload. The figure is cache calls per second for the whole
instance (all workers together), for three workloads over 256 keys of 64-byte values:

- get: ``cache_get`` of keys present (the read path);
- update: ``cache_update`` of existing keys (the write path, the lock);
- mixed: ``cache_update`` then ``cache_get`` of the same key, alternately.

    python -m bench api -- --duration 3 --ops 2000
"""

from __future__ import annotations

import argparse
import http.client
import threading
import time
from pathlib import Path

from bench.common import (
    IMPERIUM,
    UWSGI_CORE,
    Server,
    free_port,
    print_table,
    ratio,
    tempdir,
    wait_first_200,
)

WORKERS = 4
CLIENTS = 8
WORKLOADS = ("get", "update", "mixed")

APP = '''\
import uwsgi

KEYS = [("key-%d" % i).encode() for i in range(256)]
VALUE = b"v" * 64


def application(environ, start_response):
    query = dict(p.split("=") for p in environ["QUERY_STRING"].split("&") if "=" in p)
    mode, n = query.get("mode", "get"), int(query.get("n", "1000"))
    get, update, keys = uwsgi.cache_get, uwsgi.cache_update, KEYS
    if mode == "fill":
        for k in keys:
            update(k, VALUE)
        ops = len(keys)
    elif mode == "get":
        for i in range(n):
            get(keys[i & 255])
        ops = n
    elif mode == "update":
        for i in range(n):
            update(keys[i & 255], VALUE)
        ops = n
    else:
        for i in range(n):
            k = keys[i & 255]
            update(k, VALUE)
            get(k)
        ops = 2 * n
    body = str(ops).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''

CACHE = "name=bench,items=1000,blocksize=256"


def make_server(name: str, appdir: Path) -> Server:
    port = free_port()
    common = ["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", str(appdir / "cacheapp.py"), "--master",
              "--processes", str(WORKERS), "--disable-logging", "--cache2", CACHE]
    if name == "imperium":
        argv = [IMPERIUM, *common]
    elif name == "uwsgi":
        argv = [UWSGI_CORE, "--plugin", "python3", *common]
    else:
        raise SystemExit(f"bench_api: unknown peer {name!r}")
    return Server(name, argv, port, cwd=str(appdir))


def _get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{path}: HTTP {resp.status} {body[:200]!r}")
        return int(body)
    finally:
        conn.close()


def measure(port: int, mode: str, ops: int, duration: float) -> float:
    """Cache calls per second of the whole instance under CLIENTS busy clients."""
    done = [0] * CLIENTS
    stop = time.monotonic() + duration
    errors: list[BaseException] = []

    def client(slot: int) -> None:
        try:
            while time.monotonic() < stop:
                done[slot] += _get(port, f"/?mode={mode}&n={ops}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    if errors:
        raise RuntimeError(f"{mode}: {errors[0]!r}")
    return sum(done) / elapsed


def run(peers: list[str], duration: float, ops: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    with tempdir("bench-api-") as tmp:
        appdir = Path(tmp)
        (appdir / "cacheapp.py").write_text(APP)
        for name in peers:
            server = make_server(name, appdir)
            try:
                wait_first_200(server, server.start(appdir))
                _get(server.port, "/?mode=fill")
                out[name] = {mode: measure(server.port, mode, ops, duration) for mode in WORKLOADS}
            except RuntimeError as exc:
                print(f"bench_api: {name}: {exc}")
                out[name] = {}
            finally:
                server.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench_api", description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per workload and server")
    ap.add_argument("--ops", type=int, default=2000, help="cache calls per request")
    ap.add_argument("--peers", default="imperium,uwsgi")
    args, _unknown = ap.parse_known_args(argv)
    peers = [p for p in args.peers.split(",") if p]
    results = run(peers, args.duration, args.ops)
    ours = results.get("imperium", {})
    theirs = results.get("uwsgi", {})
    rows = [[mode, ours.get(mode), theirs.get(mode), ratio(ours.get(mode), theirs.get(mode))] for mode in WORKLOADS]
    print_table(f"cache calls per second, {WORKERS} workers, {CLIENTS} clients, {args.ops} calls per request",
                ["workload", "imperium", "uwsgi", "imperium/uwsgi"], rows,
                notes=["goal: imperium/uwsgi >= 0.5 (issue 7)",
                       "get: cache_get of present keys; update: cache_update; mixed: update+get"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
