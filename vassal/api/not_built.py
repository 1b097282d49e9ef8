"""Names of uWSGI 2.0's ``uwsgi`` module that Imperium does not offer, and why.

An app that touches one gets an ``AttributeError`` naming it and the reason, not the bare
"has no attribute" Python gives: that is how "refused by name" looks for a module attribute.
It stays an ``AttributeError`` on purpose: apps probe for optional features with
``hasattr(uwsgi, "websocket_handshake")`` and must keep seeing "absent". The twin test
(tests/interop/test_api_misc_vs_uwsgi.py) fails when real uWSGI has a name that is neither
offered nor listed here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_REQUEST = "a function of uWSGI's C request path (the WSGI environ and start_response give the same)"
_ASYNC = "uWSGI's async mode is not built (use gevent = N)"
_LEGION = "legions are not built"
_SYMBOLS = "reads symbols embedded in the uWSGI binary"

#: name -> why Imperium does not offer it
NOT_BUILT: dict[str, str] = {
    "log_this_request": "per-request log forcing is not built",
    "logsize": "the log size counter is not built",
    "alarm": "alarms are not built",
    **{name: _REQUEST for name in ("env", "start_response", "cl", "ready_fd", "add_var",
                                   "chunked_read", "chunked_read_nb", "send", "recv", "close")},
    "connect": "raw sockets by fd are not built",
    "parsefile": "reading uwsgi packet files is not built",
    **{name: "websockets are not built" for name in (
        "websocket_handshake", "websocket_recv", "websocket_recv_nb", "websocket_send",
        "websocket_send_binary")},
    **{name: _ASYNC for name in ("async_sleep", "async_connect", "green_schedule", "suspend",
                                 "wait_fd_read", "wait_fd_write")},
    "route": "internal routing is not built",
    "offload": "offloading from the app is not built",
    **{name: _LEGION for name in ("i_am_the_lord", "lord_scroll", "scrolls")},
    **{name: _SYMBOLS for name in ("embedded_data", "extract", "SymbolsImporter",
                                   "SymbolsZipImporter", "ZipImporter")},
    "set_warning_message": "uWSGI's shared warning slot is not built",
    "ready": "uWSGI's ready flag is not built",
}


def module_getattr(inner: Callable[[str], Any] | None) -> Callable[[str], Any]:
    """The module's ``__getattr__``: a reason for a name in ``NOT_BUILT``, else ``inner``'s
    answer (a subsystem's own, such as the spooler's), else Python's plain error."""

    def __getattr__(name: str) -> Any:
        reason = NOT_BUILT.get(name)
        if reason is not None:
            raise AttributeError(f"module 'uwsgi' has no attribute {name!r}: not offered by "
                                 f"Imperium ({reason})", name=name)
        if inner is not None:
            return inner(name)
        raise AttributeError(f"module 'uwsgi' has no attribute {name!r}", name=name)

    return __getattr__
