"""WSGI apps: loading them (wsgi-file, module, mount) and running one request (PEP 3333).

``AppTable.load`` imports the apps as uWSGI's python plugin does: ``.`` and every
``pythonpath`` go to the front of ``sys.path``; a ``wsgi-file`` becomes the module
``uwsgi_file_<mangled path>``; ``module`` is ``pkg.mod`` or ``pkg.mod:callable``; ``callable``
defaults to ``application``; ``mount`` adds ``MOUNTPOINT=file-or-module`` apps. An app mounted
at "" or "/" is the default app, used when no mountpoint matches.

``Responder.run`` calls the app for one request and writes the response: the head and the
body in one ``sendall`` when the app returns a list (the common case), otherwise head with the
first chunk, then each chunk; ``wsgi.file_wrapper`` uses sendfile(2).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vassal.log import log

WsgiApp = Callable[..., Any]
#: apps one process may hold, dynamic ones included (uWSGI's max-apps default)
MAX_APPS = 64


class AppLoadError(Exception):
    """An app could not be loaded; the message is one line naming the source and the cause."""


@dataclass
class App:
    id: int
    mountpoint: str
    callable: WsgiApp
    startup_time: int
    chdir: str = ""
    requests: int = 0  # in this worker (uWSGI's per-process app counter)
    exceptions: int = 0


def _describe(exc: BaseException) -> str:
    """One line: the exception and the innermost place it came from."""
    where = ""
    tb = traceback.extract_tb(exc.__traceback__)
    if tb:
        frame = tb[-1]
        where = f" ({frame.filename}, line {frame.lineno})"
    elif isinstance(exc, SyntaxError) and exc.filename:
        where = f" ({exc.filename}, line {exc.lineno})"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}{where}" if text else f"{type(exc).__name__}{where}"


def _mangle(path: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in path)


def load_wsgi_file(path: str, callable_name: str) -> WsgiApp:
    if not os.path.exists(path):
        raise AppLoadError(f"cannot load wsgi-file {path}: no such file")
    name = "uwsgi_file_" + _mangle(os.path.splitext(path)[0])
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise AppLoadError(f"cannot load wsgi-file {path}: not a python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    except AppLoadError:
        raise
    except BaseException as exc:  # noqa: BLE001 - an app may raise anything, even SystemExit
        sys.modules.pop(name, None)
        raise AppLoadError(f"cannot load wsgi-file {path}: {_describe(exc)}") from None
    app = getattr(module, callable_name, None)
    if app is None or not callable(app):
        raise AppLoadError(f"cannot load wsgi-file {path}: callable '{callable_name}' not found")
    return app


def load_module(spec: str, callable_name: str) -> WsgiApp:
    modname, sep, attr = spec.partition(":")
    attr = attr if sep else callable_name
    modname = modname.strip()
    if modname.endswith(".py") and os.path.exists(modname):
        return load_wsgi_file(modname, attr)
    try:
        module = importlib.import_module(modname)
    except ModuleNotFoundError as exc:
        if exc.name and modname.startswith(exc.name):
            raise AppLoadError(f"cannot load module {modname}: no module named '{exc.name}'") from None
        raise AppLoadError(f"cannot load module {modname}: {_describe(exc)}") from None
    except BaseException as exc:  # noqa: BLE001
        raise AppLoadError(f"cannot load module {modname}: {_describe(exc)}") from None
    obj: Any = module
    factory = attr.endswith("()")  # uWSGI's "quick callable": module:make_app() is called once
    for part in (attr[:-2] if factory else attr).split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            break
    if obj is None or not callable(obj):
        raise AppLoadError(f"cannot load module {modname}: callable '{attr}' not found")
    if factory:
        try:
            obj = obj()
        except BaseException as exc:  # noqa: BLE001
            raise AppLoadError(f"cannot load module {modname}: {attr}: {_describe(exc)}") from None
    return obj


def load_paste(uri: str, logger: bool) -> WsgiApp:
    """``paste``: ``paste.deploy.loadapp(URI)`` (``config:/path.ini``, ``egg:...``); with
    ``paste-logger`` the ini file configures ``logging`` first, as uWSGI's python plugin."""
    log(f"Loading paste environment: {uri}")
    if logger:
        import logging.config

        try:
            logging.config.fileConfig(uri[7:] if uri.startswith("config:") else uri)
        except Exception as exc:  # noqa: BLE001 - uWSGI prints the error and goes on
            log(f"paste-logger {uri}: {_describe(exc)}")
    try:
        from paste.deploy import loadapp
    except ImportError:
        raise AppLoadError(f"cannot load paste {uri}: PasteDeploy is not installed "
                           "(pip install PasteDeploy)") from None
    try:
        app = loadapp(uri)
    except BaseException as exc:  # noqa: BLE001
        raise AppLoadError(f"cannot load paste {uri}: {_describe(exc)}") from None
    if not callable(app):
        raise AppLoadError(f"cannot load paste {uri}: it gave {type(app).__name__}, not a WSGI app")
    return app


class AppTable:
    """The apps of one process, in load order; app 0 is usually the only one.

    A request's app is found as uWSGI 2.0 finds it (core/utils.c ``uwsgi_get_app_id``): by
    its UWSGI_APPID variable, else by SCRIPT_NAME, else the default app, unless
    ``no-default-app``. The default app is the first one loaded whose mountpoint is empty or
    starts with ``/`` (uWSGI's python loader). With ``vhost``/``vhost-host`` the key is
    ``HOST|SCRIPT_NAME`` (HTTP_HOST, else SERVER_NAME), given to the app as UWSGI_APPID:
    ``mount = example.com|=site.py`` serves that host.
    """

    def __init__(self) -> None:
        self.apps: list[App] = []
        self.default: App | None = None
        self.by_mount: dict[str, App] = {}
        self.errors: list[str] = []
        self.vhost = False
        self.no_default = False
        #: the app of every request when there is one, at the root, without vhost: what
        #: ``select`` would find for any request that names no app itself (see ``_settle``)
        self.only: App | None = None
        self.callable_name = "application"
        self.lock = threading.Lock()  # dynamic apps load once per worker, whichever thread asks

    def add(self, mountpoint: str, app: WsgiApp, started: float) -> App:
        mp = "" if mountpoint == "/" else mountpoint.rstrip("/") if mountpoint else ""
        entry = App(len(self.apps), mp, app, int(time.time() - started), os.getcwd())
        self.apps.append(entry)
        self.by_mount.setdefault(mp, entry)
        if self.default is None and not self.no_default and (mp == "" or mountpoint.startswith("/")):
            self.default = entry
        self._settle()
        log(f"WSGI app {entry.id} (mountpoint='{mp}') ready in {entry.startup_time} seconds on interpreter "
            f"{id(sys.modules['__main__']):#x} pid: {os.getpid()}{' (default app)' if self.default is entry else ''}")
        return entry

    def load(self, config: Any) -> None:
        """Load every app the config names; failures are collected in ``errors`` (one line each)."""
        self.vhost = bool(config.get("vhost") or config.get("vhost-host"))
        self.no_default = bool(config.get("no-default-app"))
        self._settle()
        callable_name = self.callable_name = config.get("callable") or "application"
        for what, loader in (("wsgi-file", load_wsgi_file), ("module", load_module)):
            value = config.get(what)
            if value:
                started = time.time()
                try:
                    self.add("", loader(value, callable_name), started)
                except AppLoadError as exc:
                    self.errors.append(str(exc))
        paste = config.get("paste")
        if paste:
            started = time.time()
            try:
                self.add("", load_paste(paste, bool(config.get("paste-logger"))), started)
            except AppLoadError as exc:
                self.errors.append(str(exc))
        for mount in config.getlist("mount"):
            mp, sep, target = mount.partition("=")
            if not sep:
                self.errors.append(f"invalid mountpoint: {mount} (expected MOUNTPOINT=APP)")
                continue
            started = time.time()
            try:
                if target.endswith(".py") or os.path.isfile(target):
                    app = load_wsgi_file(target, callable_name)
                else:
                    app = load_module(target, callable_name)
                self.add(mp, app, started)
            except AppLoadError as exc:
                self.errors.append(str(exc))

    def _settle(self) -> None:
        apps = self.apps
        self.only = apps[0] if (len(apps) == 1 and not apps[0].mountpoint and self.default is apps[0]
                                and not self.vhost) else None

    def select(self, env: dict, manage_script_name: bool) -> App | None:
        """The app for this request (may move a mountpoint from PATH_INFO to SCRIPT_NAME)."""
        if len(self.apps) == 1 and not self.apps[0].mountpoint and self.default is not None and not self.vhost \
                and env.get("UWSGI_SCRIPT") is None and env.get("UWSGI_MODULE") is None \
                and env.get("UWSGI_FILE") is None:
            return self.apps[0]
        if manage_script_name:
            path = env.get("PATH_INFO", "")
            best = None
            for mp, app in self.by_mount.items():
                if mp and (path == mp or path.startswith(mp + "/")) and (best is None or len(mp) > len(best.mountpoint)):
                    best = app
            if best is not None:
                env["SCRIPT_NAME"] = best.mountpoint
                env["PATH_INFO"] = path[len(best.mountpoint):]
        key = env.get("UWSGI_APPID")
        if not key:
            key = env.get("SCRIPT_NAME", "")
            if self.vhost:
                key = env["UWSGI_APPID"] = f"{env.get('HTTP_HOST') or env.get('SERVER_NAME') or ''}|{key}"
        app = self.by_mount.get(key)
        if app is None and (env.get("UWSGI_SCRIPT") or env.get("UWSGI_MODULE") or env.get("UWSGI_FILE")):
            app = self.load_dynamic(env, key)
        return app if app is not None else self.default

    def load_dynamic(self, env: dict, key: str) -> App | None:
        """A dynamic app (uWSGI's LOADER_DYN): the web server names it per request
        (UWSGI_SCRIPT ``module[:callable]``, UWSGI_MODULE + UWSGI_CALLABLE, or UWSGI_FILE),
        and it is loaded once per worker, mounted at the request's app key (SCRIPT_NAME, or
        HOST|SCRIPT_NAME with vhost). UWSGI_CHDIR is entered first, UWSGI_SETENV
        (``NAME=VALUE``) set. None when it cannot be loaded (logged; the default app answers)."""
        with self.lock:
            app = self.by_mount.get(key)
            if app is not None:
                return app
            if len(self.apps) >= MAX_APPS:
                log(f"cannot load the dynamic app for {key!r}: {MAX_APPS} apps already loaded")
                return None
            if env.get("UWSGI_PYHOME"):
                log(f"UWSGI_PYHOME {env['UWSGI_PYHOME']} is not applied: dynamic apps run in the "
                    "instance's interpreter (set home/virtualenv in its config)")
            setenv = env.get("UWSGI_SETENV") or ""
            name, eq, value = setenv.partition("=")
            if eq and name:
                os.environ[name] = value
            started = time.time()
            try:
                if env.get("UWSGI_CHDIR"):
                    os.chdir(env["UWSGI_CHDIR"])
                if env.get("UWSGI_SCRIPT"):
                    callable_ = load_module(env["UWSGI_SCRIPT"], self.callable_name)
                elif env.get("UWSGI_MODULE"):
                    module = env["UWSGI_MODULE"]
                    if env.get("UWSGI_CALLABLE"):
                        module = f"{module}:{env['UWSGI_CALLABLE']}"
                    callable_ = load_module(module, self.callable_name)
                else:
                    callable_ = load_wsgi_file(env["UWSGI_FILE"], self.callable_name)
            except (AppLoadError, OSError, ValueError) as exc:
                log(f"cannot load the dynamic app for {key!r}: {exc}")
                return None
            entry = self.add(key, callable_, started)
            self.by_mount[key] = entry
            return entry


class FileWrapper:
    """``wsgi.file_wrapper``: iterable over a file; sent with sendfile(2) when it has an fd."""

    def __init__(self, filelike: Any, blksize: int = 65536) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration

    def fileno(self) -> int | None:
        try:
            return self.filelike.fileno()
        except (AttributeError, OSError, ValueError):
            return None


class ErrorStream:
    """``wsgi.errors``: text to the log (fd 2)."""

    def write(self, s: str) -> int:
        if s:
            sys.stderr.write(s)
        return len(s)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        sys.stderr.flush()


def exception_line(exc: BaseException) -> str:
    return _describe(exc)


def print_app_exception() -> None:
    """The traceback of an exception raised by the app, on the log, as uWSGI prints it."""
    try:
        sys.stderr.write(traceback.format_exc())
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - logging must never fail a request
        pass
