"""uWSGI's internal routing: rules that redirect, rewrite, answer, add headers or log per request.

The ``route*``, ``final-route*``, ``error-route*`` and ``response-route*`` options (see
``table``), with uWSGI 2.0's conditions (``conditions``), actions (``actions``) and
``$1``/``${VAR}`` templates (``expand``), plus the response-header options that go with them:
``collect-header``/``response-header-collect`` (copy a response header into a request
variable), ``pull-header`` (move it there: the client does not get it) and ``del-header``
(never send it).

Everything is compiled once, when the instance starts (a bad rule stops the start-up with one
line naming the option, file and line); a worker then makes one call per request
(``Router.request``) before the static files and the app, and the response object calls back
into the request's Exchange before a head goes out (``filter_head``) and after the request
was logged (``final``). A config without any of these options gets no router: the request
path pays nothing.

As in uWSGI, static files are looked up (with the PATH_INFO the client sent) before the
request rules run, and served after them unless a rule ended the request: a ``rewrite`` does
not change which static file answers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from vassal.log import log
from vassal.protocols import static as static_mod

from .exchange import Exchange
from .table import BREAK, ROUTE_OPTIONS, Chain, RouteError, dump, rules_of, run

__all__ = ["Router", "RouteError", "from_config", "ROUTE_OPTIONS", "HEADER_OPTIONS"]

#: the response-header options the router also handles
HEADER_OPTIONS = ("collect-header", "pull-header", "del-header")


@dataclass
class Router:
    chains: dict[str, Chain]
    collect: dict[str, str] = field(default_factory=dict)  # header (lower case) -> request var
    pull: dict[str, str] = field(default_factory=dict)
    del_headers: frozenset[str] = frozenset()
    mime: dict[bytes, str] = field(default_factory=dict)
    static: Any = None  # vassal.protocols.static.StaticFiles: static-map & co. (or None)
    files: Any = None  # the StaticFiles that answers the ``static`` action

    def request(self, env: dict, resp: Any, worker: Any) -> Exchange:
        """The request chain, before the static files and the app. ``answered``: it ended the
        request (the answer, if any, is sent); ``found``: the static file to serve (looked up
        before the rules ran, as uWSGI does); ``reselect``: choose the app again."""
        ex = Exchange(self, env, resp, worker)
        resp.route = ex
        chain = self.chains["request"]
        if chain.rules:
            if self.static is not None:
                ex.found = self.static.locate(env)
                ex.located = True
            try:
                outcome = run(chain, ex)
            except BaseException:
                outcome = BREAK  # a write failed: the static file found is not served either
                raise
            finally:
                if outcome == BREAK and ex.found is not None:
                    os.close(ex.found.fd)
                    ex.found = None
            if outcome == BREAK:
                ex.answered = True
                if not resp.head_sent and resp.status is not None:
                    ex.write_headers()  # a head prepared and not sent goes out at the end (uWSGI)
                if not resp.head_sent:
                    resp.keep = False  # nothing frames the end: the connection goes
                    if resp.status is None:
                        resp.status = "0"  # uWSGI logs status 0 for a request dropped this way
                    resp.head_sent = True
        return ex

    def run(self, chain: Chain, ex: Exchange) -> int:
        return run(chain, ex)

    def serve_file(self, ex: Exchange, path: str) -> None:
        """The ``static`` action: one file, answered as a static file (uWSGI's
        ``uwsgi_file_serve`` with the path as its own document root)."""
        files = self.files
        resp = ex.resp
        reply = files.serve_path(os.fsencode(path), ex.env, resp.sock, resp.keep, resp.extra,
                                 None if ex.no_offload else getattr(ex.worker, "offload", None), ex)
        if reply is not None and not resp.head_sent:
            ex.absorb(reply)


def _headers(config: Any, option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    verb = "collecting" if option == "collect-header" else "pulling"
    for value, origin in config.occurrences(option):
        header, space, var = str(value).partition(" ")
        if not space or not header or not var:
            raise RouteError(f"{option} ({origin}): invalid {option.split('-')[0]} header syntax, must be "
                             f"<header> <var>: {value!r}")
        out.setdefault(header.lower(), var)
        log(f"{verb} header {header} to var {var}")
    return out


def wanted(config: Any) -> bool:
    return any(config.has(name) for name in (*ROUTE_OPTIONS, *HEADER_OPTIONS))


def from_config(config: Any, static: Any = None) -> Router | None:
    """The router this config asks for, or None (no routing option given). RouteError (one
    line naming option and origin) for anything that cannot work."""
    if not wanted(config):
        return None
    chains = rules_of(config)
    dump(chains)
    files = static if static is not None else static_mod.from_config(config, always=True)
    router = Router(chains, collect=_headers(config, "collect-header"), pull=_headers(config, "pull-header"),
                    del_headers=frozenset(str(v).lower() for v in config.getlist("del-header")),
                    mime=files.mime, static=static, files=files)
    return router
