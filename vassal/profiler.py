"""``profiler``: log the app's python calls (``pycall``) or lines (``pyline``) as uWSGI's
python plugin does (plugins/python/profiler.c).

uWSGI installs the hook on the worker's main thread, where only the app's code is python; here
the worker's own loop is python too, so the hook is on only while the main thread runs a
request of the app, and frames of Imperium's own modules are not logged (in uWSGI they are C).
Each line carries the microseconds since the previous one (0 for the first).

Any other value is what uWSGI does with it: nothing (it only knows these two names); a notice
says so once, at start-up.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from types import FrameType
from typing import Any

from vassal.log import log

KINDS = ("pycall", "pyline")
#: frames from here are the server's, not the app's
_OWN = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_OWN_DIRS = tuple(_OWN + d + os.sep for d in ("vassal", "emperor", "monitors"))
#: server functions the app calls whose C counterparts in uWSGI have another name
_C_NAMES = {"start_response": "uwsgi_spit"}


class Profiler:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.last = 0
        self.main = threading.main_thread()

    def _delta(self) -> int:
        now = time.monotonic_ns() // 1000
        delta = now - self.last if self.last else 0
        self.last = now
        return delta

    def _profile(self, frame: FrameType, event: str, arg: Any) -> None:
        code = frame.f_code
        if code.co_filename.startswith(_OWN_DIRS):
            caller = frame.f_back
            if event == "call" and caller is not None and not caller.f_code.co_filename.startswith(_OWN_DIRS):
                # the app calls into the server (start_response, the uwsgi module): a C call
                # in uWSGI, logged as such, from the caller's frame
                self._c_call(caller, _C_NAMES.get(code.co_name, code.co_name))
            return
        if event == "call":
            log(f"[uWSGI Python profiler {self._delta()}] CALL: {code.co_filename} (line {frame.f_lineno}) -> "
                f"{code.co_name} {code.co_argcount} args, stacksize {code.co_stacksize}")
        elif event == "c_call":
            self._c_call(frame, getattr(arg, "__name__", type(arg).__name__))

    def _c_call(self, frame: FrameType, name: str) -> None:
        code = frame.f_code
        log(f"[uWSGI Python profiler {self._delta()}] C CALL: {code.co_filename} (line {frame.f_lineno}) -> "
            f"{name} {code.co_argcount} args, stacksize {code.co_stacksize}")

    def _trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        code = frame.f_code
        if code.co_filename.startswith(_OWN_DIRS):
            return None  # no line events for the server's own frames
        if event == "line":
            log(f"[uWSGI Python profiler {self._delta()}] file {code.co_filename} line {frame.f_lineno}: "
                f"{code.co_name} argc:{code.co_argcount}")
        return self._trace

    def on(self) -> None:
        """At the start of a request: hook the main thread only, as uWSGI does."""
        if threading.current_thread() is not self.main:
            return
        if self.kind == "pycall":
            sys.setprofile(self._profile)
        else:
            sys.settrace(self._trace)

    def off(self) -> None:
        if threading.current_thread() is not self.main:
            return
        if self.kind == "pycall":
            sys.setprofile(None)
        else:
            sys.settrace(None)


def from_config(config: Any) -> Profiler | None:
    kind = config.get("profiler")
    if not kind:
        return None
    if kind not in KINDS:
        log(f"imperium: profiler {kind}: not a profiler (pycall or pyline): no effect, as in uWSGI")
        return None
    return Profiler(kind)
