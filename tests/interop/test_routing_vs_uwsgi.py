"""Internal routing side by side with Debian's real uWSGI: same rules, same answers.

Both servers read one ini (only the ports differ) with a table of routing rules over every
kind of subject, condition and action this implementation has, and the response-header
options; each request goes to both and the status, the headers and the body must match
(the hop-by-hop Connection header aside: Imperium says "close" when it closes). The app
(apps/routed.py) shows the request variables the rules left it.

Deliberate differences are asserted of Imperium alone: text a client puts into a captured
group is never expanded as ``${...}`` (uWSGI reads the Authorization header into a redirect
for ``/redir/${HTTP_AUTHORIZATION}``).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
from pathlib import Path

import pytest

from tests.conftest import IMPERIUM, Procs, free_port, port_open, read_to_close, wait_until
from tests.interop.helpers import VASSAL_BINARY, backend_argv, copy_app, need_uwsgi
from vassal.protocols import uwsgi as U
from vassal.protocols.static import http_date

KINDS = ("imperium", "uwsgi")
OURS = VASSAL_BINARY == IMPERIUM

RULES = r"""
plugins = router_redirect,router_rewrite,router_static,router_basicauth,router_expires,router_hash
static-map = /s={t}
collect-header = X-Sendfile X_SENDFILE
pull-header = X-Secret SECRET
del-header = X-Drop
route = ^/redir/(.*) redirect:/to/$1?${{QUERY_STRING}}
route = ^/perm redirect-301:http://example.com${{REQUEST_URI}}
route = ^/brk$ break:
route = ^/notfound break:404 Not Found
route = ^/nf3 break:404
route = ^/ret/(\d+) return:$1
route = ^/forbid return:403
route = ^/rw/(.*) rewrite:/rewritten/$1?r=1
route = ^/rwl/(.*) rewrite-last:/rewritten/$1
route = ^/rwl/ addvar:NOT=reached
route = ^/dots rewrite:/a/./b/../c//d%%41/e%%zz/
route = ^/s/old rewrite:/s/a.txt
route = ^/s/a.txt addheader:X-Static-Rule: yes
route = ^/file$ static:{t}/a.txt
route = ^/png static:{t}/img.png
route = ^/missing-static static:{t}/nope
route = ^/ah/(.*)-(.*) addheader:X-Echo: $1 [$0] $2 $9 ${{HTTP_HOST}} $ end$
route = ^/addx addheader:X-Drop: from a rule
route-if = equal:${{qs[v]}};1 addvar:V1=yes
route-if-not = empty:${{cookie[c]}} addvar:COOKIE_C=${{cookie[c]}}
route-if = startswith:${{PATH_INFO}};/cond/start addvar:COND=start
route-if = endswith:${{PATH_INFO}};.end addvar:COND=end
route-if = contains:${{HTTP_USER_AGENT}};curl addvar:UA=curl
route-if = regexp:${{REQUEST_URI}};^/re/(\w+)/(\d+) addvar:RE=$2-$1
route-if = ishigher:${{qs[n]}};10 addvar:BIG=1
route-if = islowerequal:${{qs[n]}};3 addvar:SMALL=1
route-if = isfile:{t}${{PATH_INFO}} addvar:ISFILE=1
route-if = isdir:{t}${{PATH_INFO}} addvar:ISDIR=1
route-if = exists:{t}${{PATH_INFO}} addvar:EXISTS=1
route-host = ^other\.host$ addvar:HOSTED=1
route-user-agent = ^bot addvar:BOT=1
route-referer = evil break:403 Forbidden
route-qs = ^debug= addvar:DEBUG=1
route-uri = \?u=1$ addvar:URI_RULE=1
route-remote-addr = ^127\. addvar:LOCAL=1
route = ^/jump goto:target
route = ^/jump addvar:SKIPPED=1
route-label = target
route = ^/jump addvar:JUMPED=1
route = ^/vars addvar:VARS=${{hex[PATH_INFO]}}|${{base64[PATH_INFO]}}|${{mime[PATH_INFO]}}|${{qs[a]}}|${{cookie[b]}}|${{nope}}|${{uwsgi[wid]}}
route = ^/set/method setmethod:PUT
route = ^/set/path setpathinfo:/elsewhere
route = ^/set/uri seturi:/other?x
route = ^/set/addr setremoteaddr:1.2.3.4
route = ^/set/docroot setdocroot:/srv/www
route = ^/set/user setuser:joe:secret
route = ^/set/home sethome:/venv
route = ^/set/scheme setscheme:https
route = ^/set/fix setscriptname:/set
route = ^/set/fix fixpathinfo:
route = ^/math addvar:N=5
route = ^/math +:N,10
route = ^/math -:N,3
route = ^/math *:N,2
route = ^/hashd hash:key=${{qs[k]}},var=H,items=a;b;c;d
route = ^/hashm hash:key=${{qs[k]}},var=H,items=a;b;c;d;e,algo=murmur2
route = ^/auth basicauth:Realm,user:pass
route = ^/htauth basicauth:HT Realm,{t}/htpasswd
route = ^/authnext basicauth-next:R,u:p
route = ^/authnext addvar:AFTER_AUTH=1
route = ^/send send:raw-bytes
route = ^/crnl send-crnl:line
route = ^/clear clearheaders:201
route = ^/clear addheader:X-Cleared: 1
route = ^/clear break:
route = ^/expires expires:filename={t}/a.txt,value=3600
route = ^/ffile file:filename={t}/a.txt,status=202 Accepted,content_type=text/x-a
route = ^/mfile file:filename={t}/img.png,mime=1
route = ^/sfile sendfile:filename={t}/a.txt
route = ^/fastf fastfile:filename={t}/a.txt,no_cl=1
route = ^/nofile file-next:filename={t}/none
route = ^/dnl donotlog:
route = ^/cont continue:
route = ^/cont addvar:NOT=reached
route-run = addvar:RAN=1
error-route-status = 418 return:403
error-route-status = 500 addheader:X-Error-Seen: 500
response-route-if = equal:${{X_SENDFILE}};/index.html static:{t}/index.html
response-route-if-not = empty:${{X_SENDFILE}} break:404 Not Found
response-route = ^/resp/ addheader:X-Response: yes
response-route = ^/resp/del delheader:Content-Type
response-route = ^/resp/clear clearheaders:202
final-route = ^/final log:final rule for ${{PATH_INFO}}
"""


def _ini(base: Path, http_port: int, uwsgi_port: int, stats_port: int) -> str:
    return f"""[uwsgi]
http-socket = 127.0.0.1:{http_port}
socket = 127.0.0.1:{uwsgi_port}
stats = 127.0.0.1:{stats_port}
wsgi-file = {base}/routed.py
master = true
processes = 1
add-header = X-Added: yes
{RULES.format(t=base / "tree")}"""


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vassal.routing.actions import _crypt

    base = tmp_path_factory.mktemp("routing-interop")
    copy_app("routed.py", base)
    t = base / "tree"
    (t / "sub").mkdir(parents=True)
    (t / "a.txt").write_text("hello\n")
    (t / "img.png").write_bytes(b"\x89PNG fake")
    (t / "index.html").write_text("<p>index</p>\n")
    os.utime(t / "a.txt", (1_600_000_000, 1_600_000_000))
    sha = "{SHA}" + base64.b64encode(hashlib.sha1(b"shapw").digest()).decode()
    lines = [f"sha:{sha}"]
    des = _crypt(b"despw", b"xy")
    if des is not None:
        lines.append("des:" + des.decode())
    (t / "htpasswd").write_text("\n".join(lines) + "\n")
    return base


@pytest.fixture(scope="module")
def servers(tree: Path):
    need_uwsgi()
    procs = Procs(tree)
    ports: dict[str, tuple[int, int, int]] = {}
    started = {}
    try:
        for kind in KINDS:
            d = tree / kind
            d.mkdir()
            ports[kind] = (free_port(), free_port(), free_port())
            (d / "r.ini").write_text(_ini(tree, *ports[kind]))
            started[kind] = procs.start(backend_argv(kind, d / "r.ini"), cwd=d)
        for kind, p in started.items():
            wait_until(lambda p=p, kind=kind: p.poll() is not None or port_open(ports[kind][0]), 20,
                       message=f"{kind} routing")
            assert p.poll() is None, f"{kind} exited:\n{procs.output(p)[-3000:]}"
        yield {"ports": ports, "procs": procs, "started": started}
    finally:
        procs.kill_all()


def raw_http(port: int, target: str, method: str = "GET", headers: str = "") -> bytes:
    host = "" if headers.startswith("Host:") else "Host: t\r\n"
    return read_to_close(port, f"{method} {target} HTTP/1.1\r\n{host}{headers}Connection: close\r\n\r\n"
                         .encode("latin-1"), timeout=10)


def parse(raw: bytes) -> tuple[str, dict[str, list[str]], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k.lower() != "connection":
            headers.setdefault(k.strip().lower(), []).append(v.strip())
    return lines[0], headers, body


def both(servers: dict, target: str, method: str = "GET", headers: str = "") -> dict[str, bytes]:
    return {kind: raw_http(servers["ports"][kind][0], target, method, headers) for kind in KINDS}


def assert_same(answers: dict[str, bytes]) -> tuple[str, dict[str, list[str]], bytes]:
    ours, ref = parse(answers["imperium"]), parse(answers["uwsgi"])
    assert ours[0] == ref[0], f"status line: ours {ours[0]!r}, uWSGI {ref[0]!r}"
    assert ours[1] == ref[1], f"headers: ours {ours[1]}, uWSGI {ref[1]}"
    assert ours[2] == ref[2], f"body: ours {ours[2][:300]!r}, uWSGI {ref[2][:300]!r}"
    return ours


def _basic(creds: bytes) -> str:
    return f"Authorization: Basic {base64.b64encode(creds).decode()}\r\n"


CASES: dict[str, tuple[str, str, str]] = {
    "plain": ("/plain", "GET", ""),
    "redirect": ("/redir/a/b?q=1", "GET", ""),
    "redirect-head": ("/redir/x", "HEAD", ""),
    "redirect-301": ("/perm?x=1", "GET", ""),
    "break": ("/brk", "GET", ""),
    "break-status": ("/notfound", "GET", ""),
    "break-three-digits": ("/nf3", "GET", ""),
    "return-untranslated": ("/ret/404", "GET", ""),
    "return": ("/forbid", "GET", ""),
    "rewrite": ("/rw/x%20y?q=2", "GET", ""),
    "rewrite-last": ("/rwl/z", "GET", ""),
    "rewrite-normalizes": ("/dots", "GET", ""),
    "static-found-before-rules": ("/s/a.txt", "GET", ""),
    "rewrite-does-not-change-the-static-file": ("/s/old", "GET", ""),
    "static-action": ("/file", "GET", ""),
    "static-action-head": ("/file", "HEAD", ""),
    "static-action-mime": ("/png", "GET", ""),
    "static-action-missing": ("/missing-static", "GET", ""),
    "static-action-post": ("/file", "POST", "Content-Length: 0\r\n"),
    "addheader-groups": ("/ah/one-two", "GET", ""),
    "additional-headers-are-not-filtered": ("/addx", "GET", ""),
    "conditions-qs-cookie": ("/x?v=1", "GET", "Cookie: a=1; c=choc \r\n"),
    "conditions-start": ("/cond/start/x", "GET", ""),
    "conditions-end": ("/x.end", "GET", ""),
    "conditions-contains": ("/ua", "GET", "User-Agent: curl/8\r\n"),
    "conditions-regexp": ("/re/page/42", "GET", ""),
    "conditions-numbers": ("/n?n=11", "GET", ""),
    "conditions-numbers-low": ("/n?n=3", "GET", ""),
    "conditions-files": ("/a.txt", "GET", ""),
    "conditions-dirs": ("/sub", "GET", ""),
    "host": ("/h", "GET", "Host: other.host\r\n"),
    "user-agent": ("/ua", "GET", "User-Agent: bot 1.0\r\n"),
    "referer": ("/ref", "GET", "Referer: http://evil.example/\r\n"),
    "qs": ("/q?debug=1", "GET", ""),
    "uri": ("/u?u=1", "GET", ""),
    "goto": ("/jump", "GET", ""),
    "route-vars": ("/vars/x.png?a=1&b=2", "GET", "Cookie: b=cookie-b\r\n"),
    "setmethod": ("/set/method", "GET", ""),
    "setpathinfo": ("/set/path", "GET", ""),
    "seturi": ("/set/uri", "GET", ""),
    "setremoteaddr": ("/set/addr", "GET", ""),
    "setdocroot": ("/set/docroot", "GET", ""),
    "setuser": ("/set/user", "GET", ""),
    "sethome": ("/set/home", "GET", ""),
    "setscheme": ("/set/scheme", "GET", ""),
    "fixpathinfo": ("/set/fix/more", "GET", ""),
    "math": ("/math", "GET", ""),
    "hash-djb33x": ("/hashd?k=some-key", "GET", ""),
    "hash-djb33x-2": ("/hashd?k=other", "GET", ""),
    "hash-murmur2": ("/hashm?k=some-key", "GET", ""),
    "hash-murmur2-2": ("/hashm?k=abcdefg", "GET", ""),
    "basicauth-none": ("/auth", "GET", ""),
    "basicauth-ok": ("/auth", "GET", _basic(b"user:pass")),
    "basicauth-wrong": ("/auth", "GET", _basic(b"user:nope")),
    "basicauth-not-basic": ("/auth", "GET", "Authorization: Bearer xyz\r\n"),
    "htpasswd-sha": ("/htauth", "GET", _basic(b"sha:shapw")),
    "htpasswd-sha-wrong": ("/htauth", "GET", _basic(b"sha:nope")),
    "htpasswd-des": ("/htauth", "GET", _basic(b"des:despw")),
    "htpasswd-des-wrong": ("/htauth", "GET", _basic(b"des:despx")),
    "basicauth-next-wrong": ("/authnext", "GET", _basic(b"u:x")),
    "basicauth-next-none": ("/authnext", "GET", ""),
    "clearheaders": ("/clear", "GET", ""),
    "expires": ("/expires", "GET", ""),
    "file": ("/ffile", "GET", ""),
    "file-mime": ("/mfile", "GET", ""),
    "sendfile": ("/sfile", "GET", ""),
    "fastfile": ("/fastf", "GET", ""),
    "file-next": ("/nofile", "GET", ""),
    "continue": ("/cont", "GET", ""),
    "error-route": ("/status/418", "GET", ""),
    "error-route-addheader": ("/status/500", "GET", ""),
    "collect-static": ("/hdr?X-Sendfile=/index.html", "GET", ""),
    "collect-break": ("/hdr?X-Sendfile=/other", "GET", ""),
    "pull-header": ("/hdr?X-Secret=s3&X-Other=o", "GET", ""),
    "del-header": ("/hdr?X-Drop=d&X-Keep=k", "GET", ""),
    "response-addheader": ("/resp/x", "GET", ""),
    "response-delheader-does-not-touch-the-apps": ("/resp/del", "GET", ""),
    "response-clearheaders": ("/resp/clear", "GET", ""),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_answer_as_uwsgi(servers: dict, case: str) -> None:
    target, method, headers = CASES[case]
    assert_same(both(servers, target, method, headers))


def test_answers_mean_what_they_should(servers: dict, tree: Path) -> None:
    """A few answers spelled out, so that both servers agreeing on nonsense fails too."""
    status, headers, body = assert_same(both(servers, "/redir/a/b?q=1"))
    assert status == "HTTP/1.1 302 Found" and headers["location"] == ["/to/a/b?q=1"] and body == b"Moved"
    status, headers, body = assert_same(both(servers, "/rw/x%20y?q=2"))
    assert b"PATH_INFO=/rewritten/x y\n" in body and b"QUERY_STRING=r=1&q=2\n" in body
    status, headers, body = assert_same(both(servers, "/s/a.txt"))
    assert body == b"hello\n" and headers["x-static-rule"] == ["yes"]
    assert headers["last-modified"] == [http_date(1_600_000_000)]
    status, headers, body = assert_same(both(servers, "/expires"))
    assert headers["expires"] == [http_date(1_600_000_000 + 3600)]
    status, headers, body = assert_same(both(servers, "/htauth", headers=_basic(b"sha:shapw")))
    assert status == "HTTP/1.1 200 OK" and b"REMOTE_USER=sha\n" in body
    status, headers, body = assert_same(both(servers, "/hdr?X-Sendfile=/index.html"))
    assert body == b"<p>index</p>\n"
    status, headers, body = assert_same(both(servers, "/hdr?X-Secret=s3&X-Other=o"))
    assert "x-secret" not in headers and headers["x-other"] == ["o"]


def test_raw_send_before_the_app(servers: dict) -> None:
    """``send`` writes its bytes before any head: the app's body follows without one."""
    answers = both(servers, "/send")
    assert answers["imperium"] == answers["uwsgi"]
    assert answers["imperium"].startswith(b"raw-bytesCONTENT_LENGTH") or answers["imperium"].startswith(b"raw-bytes")
    answers = both(servers, "/crnl")
    assert answers["imperium"] == answers["uwsgi"] and answers["imperium"].startswith(b"line\r\n")


@pytest.mark.parametrize("path", ["/redir/x", "/forbid", "/file", "/jump", "/notfound"])
def test_uwsgi_protocol_same_answer(servers: dict, path: str) -> None:
    env = {"REQUEST_METHOD": "GET", "REQUEST_URI": path, "PATH_INFO": path, "QUERY_STRING": "",
           "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "t", "SERVER_PORT": "80", "REMOTE_ADDR": "10.1.2.3",
           "HTTP_HOST": "t", "SCRIPT_NAME": ""}
    answers = {kind: read_to_close(servers["ports"][kind][1], U.encode_packet(env), timeout=10) for kind in KINDS}
    assert_same(answers)


def test_donotlog_and_final_rules(servers: dict) -> None:
    for kind in KINDS:
        port = servers["ports"][kind][0]
        raw_http(port, "/dnl-marker")
        raw_http(port, "/final-marker")
        raw_http(port, "/after-markers")
    for kind in KINDS:
        p = servers["started"][kind]
        wait_until(lambda p=p: "GET /after-markers" in servers["procs"].output(p), 10,
                   message=f"{kind} logs the last request")
        out = servers["procs"].output(p)
        assert "GET /dnl-marker" not in out, kind
        assert "GET /final-marker" in out and "final rule for /final-marker" in out, kind


def test_group_text_is_not_expanded(servers: dict) -> None:
    """uWSGI runs ``${...}`` a client put into the path; here a captured group is data."""
    answers = both(servers, "/redir/${HTTP_AUTHORIZATION}", headers="Authorization: Basic c2VjcmV0\r\n")
    ref = parse(answers["uwsgi"])
    assert ref[1]["location"] == ["/to/Basic c2VjcmV0?"]
    ours = parse(answers["imperium"])
    if OURS:
        assert ours[1]["location"] == ["/to/${HTTP_AUTHORIZATION}?"]


def test_routed_requests_in_the_stats(servers: dict) -> None:
    """Every chain that ended with BREAK counts in the cores' ``routed_requests``."""
    from tests.conftest import read_json

    for kind in KINDS:
        for target in ("/forbid", "/redir/x", "/plain"):
            raw_http(servers["ports"][kind][0], target)

    def routed(kind: str) -> int:
        doc = read_json(servers["ports"][kind][2])
        return sum(c["routed_requests"] for w in doc["workers"] for c in w["cores"])
    assert routed("imperium") == routed("uwsgi") >= 2


#: a single-page app's rules without any static-map (indico/newdle's docker config): the
#: static action still names the Content-Type, takes the gzip sibling and sets Expires
SPA = """plugins = router_static
wsgi-file = {base}/routed.py
route-uri = ^/api/ last:
route-if = isfile:{t}${{PATH_INFO}} static:{t}${{PATH_INFO}}
route-run = static:{t}/index.html
static-expires-type = text/html=60
static-gzip-all = true
"""


def test_static_action_without_static_map(tree: Path, procs: Procs) -> None:
    need_uwsgi()
    spa = tree / "spa"
    spa.mkdir(exist_ok=True)
    (spa / "index.html").write_text("<html>spa</html>\n")
    (spa / "app.js").write_text("console.log('spa')\n" * 20)
    with gzip.open(spa / "app.js.gz", "wb") as f:
        f.write((spa / "app.js").read_bytes())
    ports = {}
    for kind in KINDS:
        d = tree / f"spa-{kind}"
        d.mkdir(exist_ok=True)
        ports[kind] = free_port()
        (d / "s.ini").write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:{ports[kind]}\nmaster = true\n"
                                 + SPA.format(base=tree, t=spa))
        p = procs.start(backend_argv(kind, d / "s.ini"), cwd=d)
        wait_until(lambda p=p, kind=kind: p.poll() is not None or port_open(ports[kind]), 20, message=kind)
        assert p.poll() is None, procs.output(p)[-3000:]
    for target, headers in (("/some/route", ""), ("/app.js", ""), ("/app.js", "Accept-Encoding: gzip\r\n")):
        answers = {kind: parse(raw_http(port, target, headers=headers)) for kind, port in ports.items()}
        for kind in KINDS:  # the clock may tick between the two answers
            answers[kind][1].pop("date", None)
            answers[kind][1]["expires"] = ["set"] if "expires" in answers[kind][1] else []
        assert answers["imperium"] == answers["uwsgi"], target
    status, headers, _body = parse(raw_http(ports["imperium"], "/app.js", headers="Accept-Encoding: gzip\r\n"))
    assert headers["content-encoding"] == ["gzip"] and headers["content-type"] == ["text/javascript"]
    assert parse(raw_http(ports["imperium"], "/x"))[1]["content-type"] == ["text/html"]
