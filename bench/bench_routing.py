"""Internal routing benchmark: the cost of a realistic rule table on every request.

Imperium and Debian's real uWSGI, 2 workers each, serve the hello app on `/hello`, once with
no rule and once behind twelve rules of the kinds real configs use (an https redirect that does
not fire, donotlog for health checks, a rewrite, basic auth on /admin, a host goto and its
label, route-if on a query item, addheader on every answer, a response rule on a collected
header) — every rule is evaluated, the app answers. Measured in this run with wrk (keep-alive,
-c 20 -t 2): requests/s, p99 latency, server CPU per request, and each server's slowdown from
its own rule-less run. uWSGI's http-socket closes after each answer; its http11-socket keeps
the connection, as Imperium does: both are shown.

Nothing is asserted: the ratios are read from the table.

    python -m bench.bench_routing [--duration 5] [--rounds 1] [--peers a,b]
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench.common import (
    IMPERIUM,
    UWSGI_CORE,
    Server,
    WrkBest,
    free_port,
    measure_wrk,
    print_table,
    ratio,
    tempdir,
    write_hello_app,
    wrk_bench_main,
)

WORKERS = 2
PATH = "/hello?lang=en"
RULES = """\
[uwsgi]
plugins = router_redirect,router_rewrite,router_basicauth
route-if = equal:${HTTP_X_FORWARDED_PROTO};http redirect-permanent:https://${HTTP_HOST}${REQUEST_URI}
route = ^/healthz$ donotlog:
route = ^/old/(.*) rewrite:/new/$1
route = ^/admin basicauth:Admin,admin:secret
route-host = ^www\\. goto:www
route-run = goto:main
route-label = www
route = .* addheader:X-Served-By: www
route-label = main
route-if = equal:${qs[lang]};en addvar:LANG=en
route-uri = \\.php$ break:404
route = .* addheader:X-Frame-Options: DENY
collect-header = Content-Type CT
response-route-if = startswith:${CT};image/ addheader:Cache-Control: max-age=3600
"""
PEERS = ("imperium", "imperium-rules", "uwsgi", "uwsgi-rules", "uwsgi-http11", "uwsgi-http11-rules")


def make_server(name: str, appdir: Path) -> Server:
    port = free_port()
    common = ["--wsgi-file", str(appdir / "hello.py"), "--master", "--processes", str(WORKERS),
              "--disable-logging"]
    if name.endswith("-rules"):
        common += ["--ini", str(appdir / "rules.ini")]
    if name.startswith("imperium"):
        argv = [IMPERIUM, "--http-socket", f"127.0.0.1:{port}", *common]
    elif name.startswith("uwsgi-http11"):
        argv = [UWSGI_CORE, "--plugin", "python3", "--http11-socket", f"127.0.0.1:{port}", *common]
    elif name.startswith("uwsgi"):
        argv = [UWSGI_CORE, "--plugin", "python3", "--http-socket", f"127.0.0.1:{port}", *common]
    else:
        raise SystemExit(f"bench_routing: unknown peer {name!r}")
    return Server(name, argv, port, cwd=str(appdir))


Result = WrkBest


def measure(name: str, appdir: Path, logdir: Path, result: Result, duration: float) -> None:
    measure_wrk(make_server(name, appdir), logdir, result, workers=WORKERS, path=PATH, duration=duration)


def run(peers: list[str], duration: float, rounds: int) -> list[Result]:
    results = {p: Result(p) for p in peers}
    with tempdir("bench-routing-") as tmp:
        appdir = Path(tmp)
        write_hello_app(appdir)
        (appdir / "rules.ini").write_text(RULES)
        logdir = appdir / "logs"
        logdir.mkdir()
        for _ in range(rounds):
            for name in peers:
                try:
                    measure(name, appdir, logdir, results[name], duration)
                except Exception as exc:  # one peer failing must not hide the others
                    results[name].failure = str(exc).splitlines()[0][:120]
    return list(results.values())


def report(results: list[Result], duration: float) -> None:
    by = {r.name: r for r in results}
    rows = []
    for r in results:
        base = by.get(r.name.removesuffix("-rules"))
        peer = by.get(r.name.replace("imperium", "uwsgi-http11")) if r.name.startswith("imperium") else None
        rows.append([r.name, r.rps, r.p99_ms, r.cpu_us,
                     ratio(r.rps, base.rps) if base is not None and base is not r else "",
                     ratio(r.rps, peer.rps) if peer is not None else "", r.errors, r.failure])
    print_table("internal routing: twelve rules on every request (wrk -c 20 -t 2, keep-alive)",
                ["server", "req/s", "p99 ms", "cpu us/req", "vs no rules", "vs uwsgi-http11 same rules",
                 "errors", "failure"], rows,
                [f"{WORKERS} workers each; {duration:g}s per run; the app answers {PATH} after every rule "
                 "ran; uWSGI's http-socket closes after every response (wrk reconnects)"])


def main(argv: list[str] | None = None) -> int:
    return wrk_bench_main("bench_routing", __doc__, PEERS, run, report, argv)


if __name__ == "__main__":
    sys.exit(main())
