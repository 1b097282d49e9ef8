"""Internal routing (vassal/routing): templates, conditions, actions, the engine, bad rules.

The template expansion is checked against a direct transcription of uWSGI 2.0's two-pass
``uwsgi_routing_translate`` (written here from core/routing.c and core/regexp.c), over
templates and values hypothesis makes up; the rule parser and the engine are fuzzed so that
nothing but a RouteError ever comes out of a config, and nothing at all out of a request.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vassal import routing
from vassal.config import load_config
from vassal.routing import actions as A
from vassal.routing import conditions as C
from vassal.routing.exchange import status_code
from vassal.routing.expand import Context, TemplateError, compile_template, expand
from vassal.routing.table import ROUTE_OPTIONS, RouteError, parse_rule

# --- a transcription of uWSGI's translate, the reference ---------------------------------------


def uwsgi_translate(text: str, groups: list[str], env: dict[str, str], route_vars: Any = None) -> str:
    """core/routing.c uwsgi_routing_translate + core/regexp.c uwsgi_regexp_apply_ovec."""
    # pass 1
    out = []
    dollar = False
    n = len(groups) - 1  # capture count
    for ch in text:
        if dollar:
            if ch.isdigit():
                pos = ord(ch) - 48
                if pos <= n:
                    out.append(groups[pos])
            else:
                out += ["$", ch]
            dollar = False
        elif ch == "$":
            dollar = True
        else:
            out.append(ch)
    pass1 = "".join(out)
    # pass 2
    res: list[str] = []
    status = 0
    key = ""
    for ch in pass1:
        if status == 0:
            if ch == "$":
                status = 1
            else:
                res.append(ch)
        elif status == 1:
            if ch == "{":
                status = 2
                key = ""
            else:
                status = 0
                res += ["$", ch]
        else:
            if ch == "}":
                value = route_vars(key) if route_vars else env.get(key)
                if value:
                    res.append(value)
                status = 0
                key = ""
            else:
                key += ch
    if status == 1:
        res.append("$")
    elif status == 2:
        res.append("${" + key)
    return "".join(res)


TEXT = st.text(alphabet=st.sampled_from("ab$${}01239_[]X"), max_size=24)
PLAIN = st.text(alphabet=st.sampled_from("abc/.- xyz"), max_size=8)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(template=TEXT, groups=st.lists(PLAIN, min_size=1, max_size=4),
       env=st.dictionaries(st.sampled_from(["a", "b", "X", "ab", "a1", ""]), PLAIN, max_size=4))
def test_expansion_is_uwsgis(template: str, groups: list[str], env: dict[str, str]) -> None:
    """Same text as uWSGI's two passes whenever the group values hold no syntax of their own."""
    ctx = Context(dict(env))
    ctx.groups = groups
    assert expand(compile_template(template), ctx) == uwsgi_translate(template, groups, env)


@settings(max_examples=300)
@given(template=st.text(max_size=40), value=st.text(max_size=20))
def test_expansion_never_fails(template: str, value: str) -> None:
    try:
        parts = compile_template(template)
    except TemplateError:
        return
    ctx = Context({"PATH_INFO": value, "HTTP_COOKIE": value, "QUERY_STRING": value})
    ctx.groups = (value, value)
    assert isinstance(expand(parts, ctx), str)


def test_group_text_is_never_syntax() -> None:
    """uWSGI expands ${...} that a client put into a captured group; here it stays text."""
    ctx = Context({"HTTP_AUTHORIZATION": "secret", "PATH_INFO": "/${HTTP_AUTHORIZATION}"})
    ctx.groups = ("/${HTTP_AUTHORIZATION}", "${HTTP_AUTHORIZATION}")
    assert expand(compile_template("/x/$1"), ctx) == "/x/${HTTP_AUTHORIZATION}"
    # but a group may name the variable, as in uWSGI
    ctx.groups = ("/a", "HTTP_AUTHORIZATION")
    assert expand(compile_template("${$1}"), ctx) == "secret"


@pytest.mark.parametrize("template,expected", [
    ("${cookie[c]}", "yum"), ("${cookie[a]}", "1"), ("${cookie[zz]}", ""),
    ("${qs[x]}", "1"), ("${qs[y]}", "%20two"), ("${qs[none]}", ""),
    ("${hex[PATH_INFO]}", "2F612E706E67"), ("${base64[PATH_INFO]}", "L2EucG5n"),
    ("${mime[PATH_INFO]}", "image/png"), ("${uwsgi[wid]}", "3"), ("${uwsgi[status]}", "0"),
    ("${nothing[x]}", ""), ("${PATH_INFO}${PATH_INFO}", "/a.png/a.png"), ("$", ""), ("${", "${"),
    ("${PATH_INFO", "${PATH_INFO"), ("a$b", "a$b"), ("${metric[core.busy_workers]}", "0"),
])
def test_route_variables(template: str, expected: str) -> None:
    env = {"HTTP_COOKIE": " a=1; c=yum ;d=", "QUERY_STRING": "x=1&y=%20two&z", "PATH_INFO": "/a.png"}
    ctx = Context(env, {b"png": "image/png"}, wid=3)
    assert expand(compile_template(template), ctx) == expected


def test_time_variables() -> None:
    ctx = Context({})
    assert expand(compile_template("${time[unix]}"), ctx).isdigit()
    assert expand(compile_template("${httptime[60]}"), ctx).endswith(" GMT")
    assert re.fullmatch(r"[0-9a-f-]{36}", expand(compile_template("${uwsgi[uuid]}"), ctx))


@pytest.mark.parametrize("var", ["math", "geoip", "xattr"])
def test_plugin_variables_are_refused(var: str) -> None:
    with pytest.raises(TemplateError, match="plugin"):
        compile_template(f"x ${{{var}[A]}}")


# --- conditions --------------------------------------------------------------------------------


@pytest.mark.parametrize("cond,args,env,expected", [
    ("equal", "${A};foo", {"A": "foo"}, True), ("eq", "${A};foo", {"A": "fo"}, False),
    ("==", "a;a", {}, True), ("equal", "no-semicolon", {}, False),
    ("startswith", "${A};/st", {"A": "/static/x"}, True), ("endswith", "${A};.css", {"A": "a.css"}, True),
    ("endswith", "${A};long.css", {"A": ".css"}, False), ("contains", "${A};ti", {"A": "static"}, True),
    ("contain", "${A};zz", {"A": "static"}, False), ("empty", "${A}", {"A": ""}, True),
    ("empty", "${A}", {}, True), ("empty", "${A}", {"A": "x"}, False),
    ("ishigher", "${A};10", {"A": "11"}, True), (">", "9;10", {}, False), (">=", "10;10", {}, True),
    ("<", " 3x;4", {}, True), ("<=", "x;0", {}, True), ("islower", "-5;-4", {}, True),
    ("regexp", "${A};^/a(.)c$", {"A": "/abc"}, True), ("re", "${A};^/a", {"A": "/b"}, False),
    ("ipv4in", "${A};10.0.0.0/8", {"A": "10.1.2.3"}, True),
    ("ipv4in", "${A};10.0.0.0/8", {"A": "11.1.2.3"}, False),
    ("ipv4in", "${A};10.1.2.3", {"A": "10.1.2.3"}, True),
    ("ipv4in", "${A};10.0.0.0/8", {"A": "::1"}, False),
    ("ipv6in", "${A};fe80::/10", {"A": "fe80::1"}, True), ("ipv6in", "${A};::1", {"A": "::2"}, False),
])
def test_conditions(cond: str, args: str, env: dict, expected: bool) -> None:
    c = C.compile_condition(cond, args)
    assert c.test(c, Context(env)) is expected


def test_file_conditions(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    (tmp_path / "d").mkdir()
    (tmp_path / "l").symlink_to(f)
    env = {"T": str(tmp_path)}
    for cond, name, expected in [("isfile", "f", True), ("isfile", "d", False), ("isdir", "d", True),
                                 ("exists", "d", True), ("exists", "nope", False), ("islink", "l", True),
                                 ("isexec", "f", False), ("isexec", "d", True), ("isfile", "a\0b", False)]:
        c = C.compile_condition(cond, "${T}/" + name)
        assert c.test(c, Context(env)) is expected, (cond, name)


def test_regexp_condition_groups() -> None:
    c = C.compile_condition("regexp", "${A};^/(\\w+)/(\\d+)")
    ctx = Context({"A": "/page/42/x"})
    assert c.test(c, ctx)
    assert expand(compile_template("$1-$2-$0"), ctx) == "page-42-/page/42"


@pytest.mark.parametrize("name,args,message", [
    ("nope", "x", "unable to find \"nope\""), ("incache", "key=x", "router_cache"),
    ("regexp", "x;(", "bad regular expression"),
])
def test_bad_conditions(name: str, args: str, message: str) -> None:
    with pytest.raises(C.ConditionError, match=re.escape(message)):
        C.compile_condition(name, args)


# --- the pieces of actions ----------------------------------------------------------------------


@pytest.mark.parametrize("path,expected", [
    ("/a/b", "/a/b"), ("/a%20b", "/a b"), ("/a//b", "/a//b"), ("/a/./b", "/a/b"), ("/a/../b", "/b"),
    ("/a/b/..", "/a/"), ("/..", ""), ("/a#frag", "/a"), ("/%41%zz", "/A\0"), ("/100%%", "/100%"),
    ("rel/x", "rel/x"), ("/a/b/../../c", "/c"), ("/.hidden", "/.hidden"), ("/x/", "/x/"),
    ("/x/.", "/x/"), ("", ""),
])
def test_url_decode(path: str, expected: str) -> None:
    assert A.url_decode(path) == expected


@settings(max_examples=300)
@given(st.text(max_size=30))
def test_url_decode_never_fails(path: str) -> None:
    assert isinstance(A.url_decode(path), str)


def test_kvlist() -> None:
    assert A.kvlist("filename=/a\\,b,status=404 Not Found,mime=1,junk") == {
        "filename": "/a,b", "status": "404 Not Found", "mime": "1"}


def test_hashes() -> None:
    # djb33x over plain ASCII is Bernstein's hash with xor; bytes >= 0x80 count as signed chars
    assert A.djb33x(b"") == 5381
    assert A.djb33x(b"a") == ((5381 << 5) + 5381) ^ 97
    assert A.djb33x(b"\xff") == (((5381 << 5) + 5381) ^ -1) & 0xFFFFFFFF
    assert A.murmur2(b"") == 0
    assert A.murmur2(b"abcd") != A.murmur2(b"abce")


def test_status_code_is_uwsgis() -> None:
    assert status_code("404 Not Found") == 404
    assert status_code(" 404 Not Found") == -1560  # what uWSGI logs for "break: 404"


def test_htpasswd(tmp_path: Path) -> None:
    sha = "{SHA}" + base64.b64encode(hashlib.sha1(b"s3cret").digest()).decode()
    lines = [f"alice:{sha}"]
    crypt = A._crypt(b"pw", b"ab")
    if crypt is not None:  # libcrypt: DES lines, cut to 13 characters as in uWSGI
        lines.append("bob:" + crypt.decode())
    (tmp_path / "htpasswd").write_text("\n".join(lines) + "\n")
    path = str(tmp_path / "htpasswd")
    assert A.htpasswd_check(path, b"alice:s3cret") == 5
    assert A.htpasswd_check(path, b"alice:wrong") == 0
    assert A.htpasswd_check(path, b"nobody") == 0
    assert A.htpasswd_check(str(tmp_path / "missing"), b"alice:s3cret") == 0
    if crypt is not None:
        assert A.htpasswd_check(path, b"bob:pw") == 3
        assert A.htpasswd_check(path, b"bob:px") == 0


# --- parsing rules -----------------------------------------------------------------------------


def _router(tmp_path: Path, text: str) -> routing.Router:
    ini = tmp_path / "r.ini"
    ini.write_text("[uwsgi]\n" + text)
    config = load_config(["--ini", str(ini)], {})
    router = routing.from_config(config)
    assert router is not None
    return router


@pytest.mark.parametrize("line,message", [
    ("route = ^/a( log:x", "bad regular expression"),
    ("route = ^/a", "invalid route syntax"),
    ("route = ^/a nosuchaction:x", "unknown route action \"nosuchaction\""),
    ("route = ^/a donotlog", "has no ':'"),
    ("route-if = nocond:x log:x", "unable to find \"nocond\" route condition"),
    ("route-if = equal log:x", "invalid route condition syntax"),
    ("route-if = regexp:${A};([a- log:x", "bad regular expression"),
    ("route = ^/a http:127.0.0.1:8080", "proxying"),
    ("route = ^/a cache:key=x", "router_cache"),
    ("route = ^/a gzip:", "transformations"),
    ("route = ^/a uwsgi:,,5,0", "router_uwsgi"),
    ("route = ^/a goto:missing", "goto to label \"missing\""),
    ("route-label = back\nroute = ^/a goto:back", "jumps backwards"),
    ("route = ^/a goto:0", "jumps backwards"),
    ("route = ^/a log:${math[A+1]}", "matheval"),
    ("route = ^/a logvar:novalue", "KEY=VALUE"),
    ("route = ^/a basicauth:realm-only", "basicauth:REALM"),
    ("route = ^/a file:status=200", "filename"),
    ("route = ^/a hash:key=x", "hash key"),
    ("route = ^/a hash:key=x,var=V,items=a,algo=md5", "hash algo"),
    ("collect-header = X-Only", "invalid collect header syntax"),
    ("pull-header = X-Only", "invalid pull header syntax"),
])
def test_bad_rules_name_option_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(RouteError) as err:
        _router(tmp_path, "log-date = x\n" + line + "\n")
    text = str(err.value)
    assert message in text, text
    option = line.splitlines()[-1].split(" = ")[0]
    assert text.startswith(option + " (") and f"r.ini:{3 + line.count(chr(10))}" in text, text
    assert "\n" not in text


def test_labels_are_per_chain(tmp_path: Path) -> None:
    with pytest.raises(RouteError, match="request chain"):
        _router(tmp_path, "final-route-label = x\nroute = ^/ goto:x\n")
    router = _router(tmp_path, "route = ^/ goto:x\nroute-label = x\nfinal-route-run = goto:y\n"
                               "final-route-label = y\nroute = ^/ goto:${PATH_INFO}\n")
    assert router.chains["request"].labels == {"x": 1}
    assert router.chains["final"].labels == {"y": 1}


def test_no_router_without_routing_options(tmp_path: Path) -> None:
    ini = tmp_path / "r.ini"
    ini.write_text("[uwsgi]\nhttp-socket = :0\n")
    assert routing.from_config(load_config(["--ini", str(ini)], {})) is None


RULE_OPTIONS = st.sampled_from(sorted(ROUTE_OPTIONS))
RULE_TEXT = st.text(alphabet=st.sampled_from("^$.*()[]{}\\ :;,=/abcxy01goto lglast"), max_size=30) | \
    st.builds(lambda a, b, c: f"{a} {b}:{c}", st.sampled_from(["^/x", "equal:a;b", "regexp:${A};(x)", "404"]),
              st.sampled_from(sorted(A.FACTORIES)), st.text(max_size=12))


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(option=RULE_OPTIONS, text=RULE_TEXT)
def test_rule_parser_only_raises_route_errors(option: str, text: str) -> None:
    try:
        parse_rule(option, text, 0)
    except RouteError:
        pass


# --- running chains over a fake response --------------------------------------------------------


class FakeResp:
    """The worker's response object as far as the routing rules use it."""

    status: str | None = None
    headers: Any = ()
    head_sent = False
    body_bytes = 0
    head_bytes = 0
    chunks = 0
    has_length = False
    nheaders = 0
    write_errors = 0
    via = ""
    head_only = False
    route = None

    def __init__(self) -> None:
        self.sent = b""
        self.keep = True
        self.protocol = "HTTP/1.1"
        self.extra = "X-Added: yes\r\n"
        self.sock = self  # the static files write to the socket themselves

    def send(self, data: bytes, what: str = "") -> None:
        self.sent += data

    sendall = send


def _request(router: routing.Router, path: str, **env: str) -> tuple[Any, FakeResp, dict]:
    base = {"PATH_INFO": path, "REQUEST_URI": path, "QUERY_STRING": "", "REQUEST_METHOD": "GET",
            "HTTP_HOST": "h", "REMOTE_ADDR": "10.0.0.1", "SERVER_PROTOCOL": "HTTP/1.1", **env}
    resp = FakeResp()
    ex = router.request(base, resp, None)
    return ex, resp, base


def test_engine_semantics(tmp_path: Path) -> None:
    router = _router(tmp_path, """
route = ^/r/(.*) redirect:/new/$1?from=${REMOTE_ADDR}
route = ^/brk break:
route = ^/nf break:404
route = ^/last last:
route = ^/last addheader:X-Not: reached
route = ^/jump goto:target
route = ^/jump addheader:X-Skipped: 1
route-label = target
route = ^/jump addheader:X-Jumped: 1
route-if-not = empty:${qs[v]} addvar:V=${qs[v]}
route-run = addvar:ALWAYS=1
route-uri = \\?q= setpathinfo:/queried
route = ^/rw rewrite:/rewritten?x=1
route = ^/math addvar:N=5
route = ^/math +:N,10
route = ^/math *:N,2
route = ^/math -:N,1
route = ^/math /:N,3
""")
    ex, resp, env = _request(router, "/r/a b")
    assert ex.answered and resp.sent == b"HTTP/1.1 302 Found\r\nLocation: /new/a b?from=10.0.0.1\r\nX-Added: yes\r\n\r\nMoved"
    assert not resp.keep
    ex, resp, env = _request(router, "/brk")
    assert ex.answered and resp.sent == b"" and resp.status == "0" and not resp.keep
    ex, resp, env = _request(router, "/nfx")
    assert resp.sent.startswith(b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Type: text/plain\r\n")
    ex, resp, env = _request(router, "/last")
    assert not ex.answered and ex.additional == [] and "ALWAYS" not in env
    ex, resp, env = _request(router, "/jump", QUERY_STRING="v=7")
    assert ex.additional == ["X-Jumped: 1"] and env["V"] == "7" and env["ALWAYS"] == "1"
    ex, resp, env = _request(router, "/x", REQUEST_URI="/x?q=1")
    assert env["PATH_INFO"] == "/queried"
    ex, resp, env = _request(router, "/rw", QUERY_STRING="a=b")
    assert env["PATH_INFO"] == "/rewritten" and env["QUERY_STRING"] == "x=1&a=b"
    ex, resp, env = _request(router, "/math")
    assert env["N"] == "9"


def test_response_chain_answers_instead_of_the_app(tmp_path: Path) -> None:
    (tmp_path / "page.txt").write_text("page\n")
    router = _router(tmp_path, f"""
collect-header = X-Sendfile X_SENDFILE
pull-header = X-Secret SECRET
del-header = Server
response-route-if = equal:${{X_SENDFILE}};/page static:{tmp_path}/page.txt
response-route-if-not = empty:${{SECRET}} addheader:X-Had-Secret: ${{SECRET}}
error-route-status = 418 return:403
""")
    ex, resp, env = _request(router, "/app")
    resp.status, resp.headers = "200 OK", [("X-Sendfile", "/page"), ("Server", "x"), ("Content-Type", "a/b")]
    assert not ex.filter_head()
    assert resp.head_sent and b"page\n" in resp.sent and env["X_SENDFILE"] == "/page"
    ex, resp, env = _request(router, "/app")
    resp.status, resp.headers = "200 OK", [("X-Secret", "s"), ("Server", "x"), ("Content-Type", "a/b")]
    assert ex.filter_head()
    assert resp.headers == [("Content-Type", "a/b")] and env["SECRET"] == "s"
    assert resp.extra == "X-Added: yes\r\nX-Had-Secret: s\r\n"
    ex, resp, env = _request(router, "/teapot")
    resp.status, resp.headers = "418 I'm a teapot", [("Content-Type", "a/b")]
    assert not ex.filter_head()
    assert resp.sent.startswith(b"HTTP/1.1 403 Forbidden\r\n") and resp.sent.endswith(b"\r\n\r\nForbidden")


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(path=st.text(max_size=20), qs=st.text(max_size=20), cookie=st.text(max_size=20))
def test_requests_never_break_the_engine(tmp_path: Path, path: str, qs: str, cookie: str) -> None:
    router = ENGINE_ROUTER.setdefault("r", _router(tmp_path, """
route = ^/(.*)/(.*) addvar:A=$1|$2|${cookie[$1]}|${qs[$2]}|${hex[QUERY_STRING]}
route-if = regexp:${HTTP_COOKIE};(\\d+) goto:${cookie[x]}
route-label = 5
route = (.*) rewrite:$1?${QUERY_STRING}
route-if = contains:${PATH_INFO};z return:404
route-if = startswith:${QUERY_STRING};b redirect:${PATH_INFO}${QUERY_STRING}
route = ^/a break:500
"""))
    _request(router, path, QUERY_STRING=qs, HTTP_COOKIE=cookie)


ENGINE_ROUTER: dict[str, routing.Router] = {}


def test_donotlog_and_logvar(tmp_path: Path) -> None:
    from vassal import log as logmod

    router = _router(tmp_path, "route = ^/quiet donotlog:\nroute = ^/ logvar:who=${REMOTE_ADDR}\n")
    _request(router, "/quiet")
    assert logmod.take_skip() and not logmod.take_skip()
    _request(router, "/x")
    assert logmod.take_logvars() == {b"who": b"10.0.0.1"}


def test_static_action_refuses_symlinks_out(tmp_path: Path) -> None:
    (tmp_path / "real.txt").write_text("x")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    router = _router(tmp_path, f"route = ^/ static:{tmp_path}/link.txt\n")
    ex, resp, env = _request(router, "/")
    assert ex.answered and resp.sent == b""

