"""uwsgidecorators for Imperium: the decorators uWSGI apps use over the ``uwsgi`` module.

Same names and behaviour as the module uWSGI ships (Debian's python3-uwsgidecorators), written
for Imperium: ``@postfork``, ``@spool``/``@spoolraw``/``@spoolforever``, ``@mulefunc``,
``@mule``/``@muleloop``/``@mulemsg``/``@farm`` (with ``mule_brain``, ``mule_brainloop``,
``mulemsg_loop``, ``farm_loop``), ``@signal``, ``@timer``, ``@rbtimer``, ``@cron``,
``@filemon``, ``@rpc``, ``@lock``, ``@thread``, ``@harakiri``. Importing it installs three
hooks on the ``uwsgi`` module, as the original does: ``uwsgi.spooler`` (runs the spooled
function named in the job), ``uwsgi.post_fork_hook`` (runs the @postfork chain in every new
process) and ``uwsgi.mule_msg_hook`` (runs the @mulefunc named in a mule message).

It is installed as a top-level module of the Imperium distribution, so real uWSGI (with its
own Python and Debian's copy) never sees it. Small differences: decorators that return
nothing in the original (``@farm``, ``@mule``, ``@muleloop``, ``@mulemsg``, ``@postfork(N)``)
return the function; ``@harakiri`` clears the deadline even when the function raises; a
spooled job's body that is not UTF-8 is passed as bytes instead of failing to decode.
"""

from __future__ import annotations

import pickle
import sys
import threading
from functools import partial
from typing import Any

import uwsgi

if not uwsgi.masterpid():
    raise Exception("you have to enable the uWSGI master process to use this module")

spooler_functions: dict[str, Any] = {}
mule_functions: dict[str, Any] = {}
postfork_chain: list[Any] = []

#: spool() keyword arguments that are options of the spooler, not arguments of the function
_SPOOLER_KEYS = ("message_dict", "spooler", "priority", "at", "body")


def _to_bytes(value: Any) -> Any:
    return value.encode("utf-8") if isinstance(value, str) else value


def _to_text(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value


def get_free_signal() -> int:
    """The lowest signal number nobody registered in this process's table."""
    for num in range(256):
        if not uwsgi.signal_registered(num):
            return num
    raise Exception("No free uwsgi signal available")


def manage_spool_request(job: dict) -> int:
    """``uwsgi.spooler``: run the function a @spool decorator spooled, return its code."""
    fields = {_to_text(k): v for k, v in job.items()}
    pickled = "args" in fields
    if pickled:
        args = pickle.loads(fields.pop("args"))
        kwargs = pickle.loads(fields.pop("kwargs"))
    fields = {k: _to_text(v) for k, v in fields.items()}
    func = spooler_functions[fields["ud_spool_func"]]
    ret = func(*args, **kwargs) if pickled else func(fields)
    return int(fields.get("ud_spool_ret", ret))


def postfork_chain_hook() -> None:
    """``uwsgi.post_fork_hook``: every @postfork function, in order of definition."""
    for func in postfork_chain:
        func()


uwsgi.spooler = manage_spool_request
uwsgi.post_fork_hook = postfork_chain_hook


class postfork:  # noqa: N801 - uWSGI's name
    """``@postfork`` runs the function after each fork; ``@postfork(N)`` only in worker N."""

    def __init__(self, f: Any) -> None:
        if callable(f):
            self.f, self.wid = f, 0
        else:
            self.f, self.wid = None, f
        postfork_chain.append(self)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.f is None:  # @postfork(N) decorating its function
            self.f = args[0]
            return args[0]
        if self.wid > 0 and self.wid != uwsgi.worker_id():
            return None
        return self.f()


class _spoolraw:  # noqa: N801
    """A function run by the spooler: calling it spools a job that names it."""

    ret_code: int | None = None  # None: the function's own return value decides

    def __init__(self, f: Any, pass_arguments: bool) -> None:
        if "spooler" not in uwsgi.opt:
            raise Exception(f"you have to enable the uWSGI spooler to use @{type(self).__name__} decorator")
        self.f = f
        self.pass_arguments = pass_arguments
        spooler_functions[f.__name__] = f
        f.spool = self.__call__  # uWSGI < 1.9.13 spelling: func.spool(...)
        self.base_dict: dict[str, Any] = {"ud_spool_func": f.__name__}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.ret_code is not None:
            self.base_dict["ud_spool_ret"] = str(self.ret_code)
        job = dict(self.base_dict)
        if self.pass_arguments:
            for key in _SPOOLER_KEYS:
                if key in kwargs:
                    job[key] = kwargs.pop(key)
            job["args"] = pickle.dumps(args)
            job["kwargs"] = pickle.dumps(kwargs)
        else:
            if args:
                job.update(args[0])
            job.update(kwargs)
        return uwsgi.spool({_to_bytes(k): _to_bytes(v) for k, v in job.items()})

    def spool(self, *args: Any, **kwargs: Any) -> Any:
        return type(self).__call__(self, *args, **kwargs)


class _spool(_spoolraw):  # noqa: N801
    """The job is done (file removed) whatever the function returns."""

    ret_code = uwsgi.SPOOL_OK


class _spoolforever(_spoolraw):  # noqa: N801
    """The job is kept and run again at every spooler pass."""

    ret_code = uwsgi.SPOOL_RETRY


def spool_decorate(f: Any = None, pass_arguments: bool = False, _class: type = _spoolraw) -> Any:
    if not f:
        return partial(_class, pass_arguments=pass_arguments)
    return _class(f, pass_arguments)


def spoolraw(f: Any = None, pass_arguments: bool = False) -> Any:
    return spool_decorate(f, pass_arguments)


def spool(f: Any = None, pass_arguments: bool = False) -> Any:
    return spool_decorate(f, pass_arguments, _spool)


def spoolforever(f: Any = None, pass_arguments: bool = False) -> Any:
    return spool_decorate(f, pass_arguments, _spoolforever)


class mulefunc:  # noqa: N801
    """``@mulefunc``: calling the function runs it in a mule (``@mulefunc(N)``: mule N, or a
    farm by name); the call returns at once."""

    def __init__(self, f: Any) -> None:
        if callable(f):
            self.fname, self.mule = f.__name__, 0
            mule_functions[f.__name__] = f
        else:
            self.fname, self.mule = None, f

    def real_call(self, *args: Any, **kwargs: Any) -> None:
        message = {"service": "uwsgi_mulefunc", "func": self.fname, "args": args, "kwargs": kwargs}
        uwsgi.mule_msg(pickle.dumps(message), self.mule)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.fname:  # @mulefunc(N) decorating its function
            self.fname = args[0].__name__
            mule_functions[self.fname] = args[0]
            return self.real_call
        return self.real_call(*args, **kwargs)


def mule_msg_dispatcher(message: bytes) -> Any:
    """``uwsgi.mule_msg_hook``: run the @mulefunc a message names."""
    msg = pickle.loads(message)
    if msg["service"] == "uwsgi_mulefunc":
        return mule_functions[msg["func"]](*msg["args"], **msg["kwargs"])
    return None


uwsgi.mule_msg_hook = mule_msg_dispatcher


class rpc:  # noqa: N801
    def __init__(self, name: Any) -> None:
        self.name = name

    def __call__(self, f: Any) -> Any:
        uwsgi.register_rpc(self.name, f)
        return f


class farm_loop:  # noqa: N801
    """In a mule of farm ``farm``: pass every farm message to ``f``, forever."""

    def __init__(self, f: Any, farm: Any) -> None:
        self.f, self.farm = f, farm

    def __call__(self) -> None:
        if uwsgi.mule_id() == 0 or not uwsgi.in_farm(self.farm):
            return
        while True:
            message = uwsgi.farm_get_msg()
            if message:
                self.f(message)


class farm:  # noqa: N801
    def __init__(self, name: Any = None, **kwargs: Any) -> None:
        self.name = name

    def __call__(self, f: Any) -> Any:
        postfork_chain.append(farm_loop(f, self.name))
        return f


def _die_with_traceback() -> None:
    exc = sys.exc_info()
    sys.excepthook(exc[0], exc[1], exc[2])
    sys.exit(1)


class mule_brain:  # noqa: N801
    """In mule ``num``: run ``f`` once after the fork (an error ends the mule)."""

    def __init__(self, f: Any, num: int) -> None:
        self.f, self.num = f, num

    def __call__(self) -> None:
        if uwsgi.mule_id() == self.num:
            try:
                self.f()
            except Exception:  # noqa: BLE001
                _die_with_traceback()


class mule_brainloop(mule_brain):  # noqa: N801
    """In mule ``num``: run ``f`` again and again."""

    def __call__(self) -> None:
        if uwsgi.mule_id() == self.num:
            while True:
                try:
                    self.f()
                except Exception:  # noqa: BLE001
                    _die_with_traceback()


class mule:  # noqa: N801
    def __init__(self, num: int) -> None:
        self.num = num

    def __call__(self, f: Any) -> Any:
        postfork_chain.append(mule_brain(f, self.num))
        return f


class muleloop(mule):  # noqa: N801
    def __call__(self, f: Any) -> Any:
        postfork_chain.append(mule_brainloop(f, self.num))
        return f


class mulemsg_loop:  # noqa: N801
    """In mule ``num``: pass every message to ``f``, forever."""

    def __init__(self, f: Any, num: int) -> None:
        self.f, self.num = f, num

    def __call__(self) -> None:
        if uwsgi.mule_id() == self.num:
            while True:
                message = uwsgi.mule_get_msg()
                if message:
                    self.f(message)


class mulemsg:  # noqa: N801
    def __init__(self, num: int) -> None:
        self.num = num

    def __call__(self, f: Any) -> Any:
        postfork_chain.append(mulemsg_loop(f, self.num))
        return f


class _signal_decorator:
    """Base of the decorators that register ``f`` for a signal (a free one unless ``signum``)."""

    def __init__(self, **kwargs: Any) -> None:
        self.num = kwargs["signum"] if "signum" in kwargs else get_free_signal()
        self.target = kwargs.get("target", "")

    def arm(self) -> None:
        """Set up what raises the signal."""

    def __call__(self, f: Any) -> Any:
        uwsgi.register_signal(self.num, self.target, f)
        self.arm()
        return f


class signal(_signal_decorator):  # noqa: N801
    def __init__(self, num: int, **kwargs: Any) -> None:
        super().__init__(signum=num, **{k: v for k, v in kwargs.items() if k != "signum"})


class timer(_signal_decorator):  # noqa: N801
    def __init__(self, secs: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.secs = secs

    def arm(self) -> None:
        uwsgi.add_timer(self.num, self.secs)


class rbtimer(timer):  # noqa: N801
    def arm(self) -> None:
        uwsgi.add_rb_timer(self.num, self.secs)


class cron(_signal_decorator):  # noqa: N801
    def __init__(self, minute: int, hour: int, day: int, month: int, dayweek: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.minute, self.hour, self.day, self.month, self.dayweek = minute, hour, day, month, dayweek

    def arm(self) -> None:
        uwsgi.add_cron(self.num, self.minute, self.hour, self.day, self.month, self.dayweek)


class filemon(_signal_decorator):  # noqa: N801
    def __init__(self, fsobj: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fsobj = fsobj

    def arm(self) -> None:
        uwsgi.add_file_monitor(self.num, self.fsobj)


class erlang:  # noqa: N801
    def __init__(self, name: Any) -> None:
        self.name = name

    def __call__(self, f: Any) -> Any:
        register = getattr(uwsgi, "erlang_register_process", None)
        if register is None:
            raise Exception("@erlang: the erlang plugin is not available in Imperium")
        register(self.name, f)
        return f


class lock:  # noqa: N801
    """Run the function holding uWSGI lock 0 (never in the spooler, as the original)."""

    def __init__(self, f: Any) -> None:
        self.f = f

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if uwsgi.i_am_the_spooler():
            return None
        uwsgi.lock()
        try:
            return self.f(*args, **kwargs)
        finally:
            uwsgi.unlock()


class thread:  # noqa: N801
    """Calling the function runs it in a new daemon thread; the call returns the function."""

    def __init__(self, f: Any) -> None:
        self.f = f

    def __call__(self, *args: Any) -> Any:
        t = threading.Thread(target=self.f, args=args)
        t.daemon = True
        t.start()
        return self.f


class harakiri:  # noqa: N801
    """Kill the process (the master does) if the function runs longer than ``seconds``."""

    def __init__(self, seconds: int) -> None:
        self.s = seconds

    def real_call(self, *args: Any, **kwargs: Any) -> Any:
        uwsgi.set_user_harakiri(self.s)
        try:
            return self.f(*args, **kwargs)
        finally:
            uwsgi.set_user_harakiri(0)

    def __call__(self, f: Any) -> Any:
        self.f = f
        return self.real_call
