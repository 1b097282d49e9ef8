"""``run_instance(config)``: an app-server instance as ``uwsgi app.ini`` runs one.

Order of setup (uWSGI's): environment and working directory, logging and daemonizing, the
emperor link, sockets (adopted from the previous incarnation on reload), pidfile, dropping
privileges, the ``uwsgi`` module, the apps (in the master unless ``lazy-apps``), the stats
server, then the master forks the workers — before any thread exists.
"""

from __future__ import annotations

import glob
import grp
import os
import pwd
import socket
import struct
import sys
import time
from typing import Any

from vassal import jail, process_setup, routing
from vassal import log as logmod
from vassal.api import background, uwsgi_module
from vassal.api import metrics as metrics_api
from vassal.config.privacy import redact
from vassal.emperor_link import EmperorLink
from vassal.log import log
from vassal.logs.loggers import LoggerError
from vassal.logs.request import RequestLog
from vassal.master import FAILED_APP_CODE, Master
from vassal.protocols import offload, static
from vassal.scoreboard import Scoreboard
from vassal.services import Service, cheaper, log_master, sdnotify, zergpool
from vassal.services.pidfiles import SafePidfiles
from vassal.services.plan import PlanError, ServicePlan
from vassal.services.reload_rules import reload_on_exception_rule
from vassal.services.stats_server import StatsService
from vassal.sockets import (
    PROTOCOLS,
    BindError,
    ListenSocket,
    adopt_fd,
    bind_socket,
    close_unused_inherited,
    inherited_from_env,
    parse_address,
    socket_name,
    socket_specs,
    stdin_listener,
    zerg_attach,
)
from vassal.stats import StatsSource, generate
from vassal.worker import Worker, WorkerSettings, worker_main
from vassal.wsgi import AppTable


class InstanceError(Exception):
    """Setup failed; the message is the one line to print."""


def _version() -> str:
    try:
        from vassal.options import VERSION

        return VERSION
    except ImportError:  # pragma: no cover
        return "2.0.21-imperium"


def run_instance(config: Any) -> int:
    try:
        return _run(config)
    except InstanceError as exc:
        # values read from files the config's author could not read are not quoted
        message = redact(str(exc), getattr(config, "private_texts", []))
        print(f"imperium: {message}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 0


def _apply_env(config: Any) -> None:
    for item in config.getlist("env"):
        key, sep, value = item.partition("=")
        if sep:
            os.environ[key] = value
        else:
            os.environ.pop(key, None)
    for key in config.getlist("unenv"):
        os.environ.pop(key, None)


def _daemonize(logfile: str) -> None:
    """Detach: fork, new session, output to ``logfile``; the parent exits 0."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    logmod.open_logfile(logfile)


def _daemonize2(config: Any, link: Any, reloading: bool) -> None:
    """``daemonize2``: like ``daemonize``, after the apps are loaded; under an emperor (or
    on a reload) only the log moves, as uWSGI does."""
    path = config.get("daemonize2")
    if link is None and not reloading:
        log("*** daemonizing uWSGI ***")
        _daemonize(path)
        uwsgi_module.set_master_pid(os.getpid())
        _write_pidfile(config.get("pidfile"))
        _write_pidfile(config.get("pidfile2"))
    else:
        _open_logfile(config, "daemonize2")


def _home(path: str) -> None:
    """Use the virtualenv at ``path``: its site-packages go to the front of sys.path."""
    if not os.path.isdir(path):
        raise InstanceError(f"home/virtualenv {path}: no such directory")
    import site

    pattern = os.path.join(path, "lib", "python*", "site-packages")
    found = sorted(glob.glob(pattern))
    before = list(sys.path)
    for d in found:
        site.addsitedir(d)
    added = [p for p in sys.path if p not in before]
    sys.path[:] = added + before
    os.environ["VIRTUAL_ENV"] = path


def _pythonpath(config: Any) -> None:
    if "." not in sys.path and "" not in sys.path:
        sys.path.insert(0, ".")
    for entry in reversed(config.getlist("pythonpath")):
        matches = sorted(glob.glob(entry)) if any(c in entry for c in "*?[") else [entry]
        for p in reversed(matches):
            sys.path.insert(0, p)
            log(f"added {p} to pythonpath.")


def _jail(step: Any, *args: Any) -> Any:
    """A step of the instance's own jail (vassal.jail); hook phases run through ``phase``."""
    try:
        return step(*args)
    except jail.JailError as exc:
        raise InstanceError(str(exc)) from None


def _drop_privileges(config: Any) -> None:
    gid_opt, uid_opt = config.get("gid"), config.get("uid")
    if config.get("logfile-chown"):
        _chown_logfile(uid_opt, gid_opt)
    if gid_opt:
        try:
            gid = int(gid_opt) if str(gid_opt).isdigit() else grp.getgrnam(gid_opt).gr_gid
        except KeyError:
            raise InstanceError(f"gid {gid_opt}: no such group") from None
        try:
            os.setgid(gid)
            os.setgroups([gid])
        except PermissionError:
            if os.getgid() != gid:
                raise InstanceError(f"cannot set gid to {gid_opt}: permission denied") from None
        log(f"setgid() to {gid}")
    if uid_opt:
        try:
            pw = pwd.getpwuid(int(uid_opt)) if str(uid_opt).isdigit() else pwd.getpwnam(uid_opt)
        except KeyError:
            if not str(uid_opt).isdigit():
                raise InstanceError(f"uid {uid_opt}: no such user") from None
            pw = None
        uid = pw.pw_uid if pw else int(uid_opt)
        if pw and not gid_opt:
            try:
                os.initgroups(pw.pw_name, pw.pw_gid)
            except PermissionError:
                pass
        try:
            os.setuid(uid)
        except PermissionError:
            if os.getuid() != uid:
                raise InstanceError(f"cannot set uid to {uid_opt}: permission denied") from None
        log(f"setuid() to {uid}")


def _chown_logfile(uid_opt: Any, gid_opt: Any) -> None:
    """``logfile-chown``: give the log file to the user and group we are about to become."""
    try:
        uid = (int(uid_opt) if str(uid_opt).isdigit() else pwd.getpwnam(uid_opt).pw_uid) if uid_opt else -1
        gid = (int(gid_opt) if str(gid_opt).isdigit() else grp.getgrnam(gid_opt).gr_gid) if gid_opt else -1
    except KeyError:
        return  # the unknown name is reported by the privilege drop itself
    try:
        logmod.chown_logfile(uid, gid)
    except OSError as exc:
        raise InstanceError(f"logfile-chown: fchown(): {exc.strerror}") from None


def _write_pidfile(path: str | None) -> None:
    if not path:
        return
    try:
        with open(path, "w") as f:
            f.write(f"{os.getpid()}\n")
    except OSError as exc:
        raise InstanceError(f"cannot write pidfile {path}: {exc.strerror}") from None


def _open_logfile(config: Any, option: str) -> None:
    """``logto``/``logto2``: a log file that cannot be opened stops the start-up."""
    try:
        logmod.open_logfile(config.get(option), truncate=bool(config.get("log-truncate")))
    except OSError as exc:
        raise InstanceError(f"cannot open {option} file {config.get(option)}: {exc.strerror}") from None


def _setup_log(config: Any, reloading: bool) -> None:
    """logto/daemonize as uWSGI: on a reload the inherited fd 2 is kept unless ``log-reopen``."""
    mode = config.get("logfile-chmod")
    if mode is not None:
        if len(mode) != 3 or any(c not in "01234567" for c in mode):
            raise InstanceError(f"logfile-chmod ({config.origin('logfile-chmod')}): invalid chmod value: {mode}")
        logmod.chmod = int(mode, 8)
    logmod.backupname = config.get("log-backupname")
    target = config.get("daemonize") or config.get("logto")
    if config.get("daemonize") and not reloading:
        _daemonize(config.get("daemonize"))
    elif target and (not reloading or config.get("log-reopen")):
        _open_logfile(config, "daemonize" if config.get("daemonize") else "logto")
    elif target and ":" not in target:
        logmod.logfile = target  # kept from the previous incarnation: still ours to rotate
    if config.get("logger-list"):
        log_master.list_loggers()
    try:
        log_master.setup(config)
    except LoggerError as exc:
        raise InstanceError(str(exc)) from None


def _socket_specs(config: Any) -> list[tuple[str, str, str]]:
    """(address, proto, option name) for every socket option, in config order (as uWSGI)."""
    try:
        return socket_specs(config.items(), config.get("protocol"))
    except ValueError as exc:
        raise InstanceError(str(exc)) from None


def _default_proto(config: Any) -> str:
    """The ``protocol`` option: what a socket without its own protocol speaks (fd 0 of an
    on-demand vassal, a socket received from a zerg server), uwsgi by default (a value we do
    not speak was refused by _socket_specs)."""
    return PROTOCOLS.get((config.get("protocol") or "").strip().lower(), "uwsgi")


def _has_stdin_socket() -> bool:
    sock = stdin_listener()
    if sock is None:
        return False
    sock.detach()  # fd 0 stays open for _make_sockets
    return True


def _make_sockets(config: Any, pools: list | None = None) -> list[ListenSocket]:
    """The instance's listening sockets (and, into ``pools``, its zergpools' sockets)."""
    backlog = int(config.get("listen") or 100)
    chmod = config.get("chmod-socket")
    inherited = inherited_from_env()
    abstract = bool(config.get("abstract-socket"))
    shared: list[ListenSocket] = []
    for addr in config.getlist("shared-socket"):
        key = ("shared", addr)
        if key in inherited:
            ls = adopt_fd(inherited.pop(key), addr, "shared")
        else:
            try:
                ls = bind_socket(addr, "shared", backlog=backlog, chmod=chmod, kind="shared-socket",
                                 chown=config.get("chown-socket"))
            except BindError as exc:
                raise InstanceError(str(exc)) from None
        ls.shared = True
        shared.append(ls)
    out: list[ListenSocket] = []
    used: set[int] = set()
    specs = _socket_specs(config)
    stdin = stdin_listener()
    if stdin is not None:  # on demand: the emperor's socket, with the `protocol` option's proto
        used.add(0)
        for key in [k for k, fd in inherited.items() if fd == 0]:
            del inherited[key]
        name = socket_name(stdin)
        out.append(ListenSocket(stdin, name, _default_proto(config)))
        log(f"uwsgi socket 0 inherited from fd 0 (on demand): {out[0].proto} {name}")
        specs = [sp for sp in specs if not _same_address(sp[0], name)]
    attached: set[str] = set()
    for node in config.getlist("zerg"):
        try:
            fds = zerg_attach(node)
        except (OSError, ValueError) as exc:
            if config.get("zerg-fallback"):
                log(f"--- unable to attach to zerg server {node}: {exc} (zerg-fallback: binding own sockets) ---")
                continue
            raise InstanceError(f"cannot attach to zerg server {node}: "
                                f"{os.strerror(exc.errno).lower() if isinstance(exc, OSError) and exc.errno else exc}"
                                ) from None
        for fd in fds:
            sock = socket.socket(fileno=fd)
            name = socket_name(sock)
            # a configured socket with the same address keeps its protocol (uWSGI matches by name)
            proto = next((p for a, p, _k in specs if _same_address(a, name)), _default_proto(config))
            out.append(ListenSocket(sock, name, proto))
            attached.add(name)
            log(f"uwsgi socket {len(out) - 1} attached from zerg server {node}: {proto} {name} fd {fd}")
    specs = [sp for sp in specs if not any(_same_address(sp[0], n) for n in attached)]
    for addr, proto, kind in specs:
        if addr.startswith("="):
            try:
                base = shared[int(addr[1:])]
            except (ValueError, IndexError):
                raise InstanceError(f"{kind} {addr}: no such shared-socket") from None
            ls = ListenSocket(socket.socket(fileno=os.dup(base.fileno())), base.name, proto, shared=True)
            out.append(ls)
            continue
        if abstract and not addr.startswith("@") and ":" not in addr and "/" not in addr:
            addr = "@" + addr
        key = (proto, addr)
        if key in inherited:
            fd = inherited.pop(key)
            used.add(fd)
            ls = adopt_fd(fd, addr, proto)
            log(f"uwsgi socket {len(out)} inherited {kind} {addr} fd {fd}")
        else:
            try:
                ls = bind_socket(addr, proto, backlog=backlog, chmod=chmod, kind=kind,
                                 so_keepalive=bool(config.get("so-keepalive")),
                                 reuse_port=bool(config.get("reuse-port")),
                                 defer_accept=0 if config.get("no-defer-accept") else
                                 int(config.get("socket-timeout") or 4),
                                 chown=config.get("chown-socket"))
            except BindError as exc:
                raise InstanceError(str(exc)) from None
            what = "TCP address" if ls.family != socket.AF_UNIX else "UNIX address"
            log(f"uwsgi socket {len(out)} bound to {what} {addr} fd {ls.fileno()}")
        out.append(ls)
    if pools is not None and config.has("zergpool"):
        try:
            pools += zergpool.bind_pools(config, inherited, used)
        except (zergpool.ZergPoolError, BindError) as exc:
            raise InstanceError(str(exc)) from None
    close_unused_inherited(inherited, used)
    timeout = int(config.get("socket-timeout") or 4)
    tv = struct.pack("ll", timeout, 0)
    for ls in out + shared:
        s = ls.sock
        os.set_inheritable(s.fileno(), False)
        # accepted sockets inherit these from the listening socket on Linux: one syscall
        # here instead of per-connection timeouts in Python
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
        if ls.family != socket.AF_UNIX:
            try:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        s.setblocking(False)
    return out


def _same_address(spec: str, name: str) -> bool:
    if spec == name:
        return True
    try:
        return parse_address(spec) == parse_address(name)
    except ValueError:
        return False


def _settings(config: Any, version: str, link: Any) -> WorkerSettings:
    files = _static_files(config)
    return WorkerSettings.from_config(
        config, version, link,
        static=files,
        router=_router(config, files),
        proxy_protocol=bool(config.get("enable-proxy-protocol") or config.get("http-enable-proxy-protocol")),
        reaper=bool(config.get("reaper")),
        reqlog=RequestLog.from_config(config),
        offload_threads=max(0, int(config.get("offload-threads") or 0)),
        reload_mercy=float(config.get("worker-reload-mercy") or 60),
    )


def _static_files(config: Any) -> Any:
    offload.use_sendfile = not config.get("disable-sendfile")
    try:
        return static.from_config(config)
    except static.StaticConfigError as exc:
        raise InstanceError(str(exc)) from None


def _router(config: Any, files: Any) -> Any:
    """The internal routing rules (vassal/routing), or None when the config has none."""
    try:
        return routing.from_config(config, files)
    except (routing.RouteError, static.StaticConfigError) as exc:
        raise InstanceError(str(exc)) from None


def _procname(config: Any, role: str) -> str | None:
    """The process title for "master" or "worker N", or None to leave argv alone."""
    prefix = config.get("procname-prefix") or ""
    if config.get("procname-prefix-spaced"):
        prefix = config.get("procname-prefix-spaced") + " "
    append = config.get("procname-append") or ""
    if role == "master" and config.get("procname-master"):
        return prefix + config.get("procname-master") + append
    if config.get("procname"):
        return prefix + config.get("procname") + append
    if config.get("auto-procname") or prefix or append:
        base = "uWSGI master" if role == "master" else f"uWSGI {role}"
        return prefix + base + append
    return None


def _set_title(title: str | None) -> None:
    if not title:
        return
    try:
        import setproctitle

        setproctitle.setproctitle(title)
    except ImportError:
        pass


def _load_apps(config: Any, need_app: bool | None, in_worker: bool, plan: ServicePlan) -> AppTable:
    """The apps; exits (FAILED_APP_CODE) when none loaded and ``need_app``, or when
    ``need_app`` is None (not given) and an app was named but failed. The pre-app and
    post-app hooks run around the loading (in the worker with lazy-apps)."""
    _phase(plan, "pre-app", in_worker)
    apps = AppTable()
    apps.load(config)
    uwsgi_module.set_apps(apps.apps)
    for err in apps.errors:
        log(f"imperium: {err}")
    if not apps.apps:
        if need_app or (need_app is None and apps.errors):
            if not in_worker:
                log("*** no app loaded. GAME OVER ***")
            raise SystemExit(FAILED_APP_CODE)
        if not in_worker:
            log("*** no app loaded. going in full dynamic mode ***")
    _phase(plan, "post-app", in_worker)
    return apps


def _gevent_setup(config: Any, threads: int) -> int:
    """``gevent = N``: N async cores per worker (vassal/gevent_loop.py); the early patch."""
    from vassal import gevent_loop

    cores = int(config.get("gevent"))
    why = gevent_loop.missing()
    if why:
        raise InstanceError(why)
    if threads > 1:
        raise InstanceError("gevent and threads cannot be combined: choose one")
    if int(config.get("offload-threads") or 0):
        raise InstanceError("gevent and offload-threads cannot be combined here (monkey patching "
                            "takes epoll away from the offload threads)")
    if cores < 1:
        raise InstanceError(f"gevent {cores}: the number of async cores must be at least 1")
    if int(config.get("socket-timeout") or 4) < 30:
        log("!!! Running gevent with a socket-timeout lower than 30 seconds is not recommended, "
            "tune it with --socket-timeout !!!")
    if config.get("gevent-early-monkey-patch"):
        gevent_loop.early_monkey_patch()
    return cores


def _phase(plan: ServicePlan, phase: str, in_worker: bool = False) -> None:
    """Run a hook phase: in the master a fatal failure ends the start-up (exit 1)."""
    if in_worker:
        plan.worker_phase(phase)
        return
    try:
        plan.phase(phase)
    except PlanError as exc:
        raise InstanceError(str(exc)) from None


def _services(config: Any, plan: ServicePlan, scaling: cheaper.CheaperConfig | None = None) -> list[Service]:
    """The master's duties this config asks for (see vassal.services)."""
    from vassal.services.sos import SosService

    sos = SosService.from_config(config)
    systemd = sdnotify.SystemdService.from_environ()
    safe = SafePidfiles.from_config(config)
    return [*log_master.active(), *uwsgi_module.services(), *([sos] if sos is not None else []),
            *plan.services(), *([cheaper.Cheaper(scaling)] if scaling else []),
            *([systemd] if systemd is not None else []), *([safe] if safe is not None else [])]


def _zergpool_service(pools: list) -> list[Service]:
    if not pools:
        return []
    return [zergpool.ZergPoolService(pools)]


def _umask(config: Any) -> None:
    """``umask``: set before anything is created (uWSGI applies it while reading the options).
    uWSGI reads three octal digits (the last three of four) and, given anything else, logs
    "invalid umask" and sets 0 (world-writable files): here that is refused."""
    value = config.get("umask")
    if value is None:
        return
    text = str(value).strip()
    digits = text[1:4] if len(text) == 4 else text
    if len(digits) != 3 or any(c not in "01234567" for c in digits):
        raise InstanceError(f"umask ({config.origin('umask')}): invalid umask: {value!r} (three octal digits, "
                            "e.g. 022)")
    os.umask(int(digits, 8))


def _cheaper(config: Any) -> cheaper.CheaperConfig | None:
    """The cheaper settings, checked before anything is bound or loaded."""
    if config.get("cheaper-algo-list"):
        cheaper.list_algorithms()
    try:
        return cheaper.from_config(config)
    except cheaper.CheaperError as exc:
        raise InstanceError(str(exc)) from None


def _run(config: Any) -> int:
    sdnotify.initializing()
    _umask(config)
    original_cwd = os.getcwd()
    reloading = bool(os.environ.get("UWSGI_RELOADS"))
    try:
        plan = ServicePlan(config)
    except PlanError as exc:
        raise InstanceError(str(exc)) from None
    _phase(plan, "asap")
    if config.get("force-cwd"):
        try:
            os.chdir(config.get("force-cwd"))
        except OSError as exc:
            raise InstanceError(f"force-cwd {config.get('force-cwd')}: {exc.strerror}") from None
    _apply_env(config)
    # log-prefix is log-date in uWSGI (the same handler): the last one given wins
    dates = [e.typed for e in config.entries if e.name in ("log-date", "log-prefix")]
    logmod.configure(dates[-1] if dates else None)
    _setup_log(config, reloading)
    version = _version()
    log(f"*** Starting uWSGI {version} (64bit) on [{time.ctime()}] ***")
    log(f"current working directory: {os.getcwd()}")
    log(f"detected binary path: {sys.executable}")
    scaling = _cheaper(config)
    if not _socket_specs(config) and not config.getlist("zerg") and not _has_stdin_socket() \
            and not config.has("zergpool"):
        raise InstanceError("no socket configured: use http-socket = ADDR or socket = ADDR")
    link = EmperorLink.from_config(config)
    process_setup.apply_max_fd(config)
    process_setup.lock_memory(config)
    if not reloading:
        _phase(plan, "pre-jail")

    def phase(name: str) -> None:
        _phase(plan, name)
    jailed = _jail(jail.start, config, reloading, phase)
    _phase(plan, "in-jail")
    if config.get("home"):
        _home(config.get("home"))
    pools: list = []  # zergpools (vassal/services/zergpool.py)
    sockets = _make_sockets(config, pools)
    process_setup.remap_stdin(config)
    _write_pidfile(config.get("pidfile"))
    as_root = os.getuid() == 0
    # as uWSGI: the jail (and its post-jail phase) and the privilege phases only for a root
    # start; the instance's own jail is vassal.jail
    _jail(jail.as_root, config, reloading, jailed, phase)
    if as_root:
        _phase(plan, "as-root")
    _drop_privileges(config)
    if as_root:
        _phase(plan, "as-user")
    _jail(jail.as_user, config, jailed)
    _write_pidfile(config.get("pidfile2"))
    if config.get("logto2"):
        _open_logfile(config, "logto2")

    # a zergpool without sockets of its own serves nothing: no worker (uWSGI's "no-workers")
    processes = 0 if pools and not sockets else max(1, int(config.get("processes") or 1))
    threads = max(1, int(config.get("threads") or 1))
    cores = threads
    if config.get("gevent"):
        cores = _gevent_setup(config, threads)
    try:
        board = Scoreboard(processes, cores)
    except OSError as exc:
        # e.g. never-swap's locked memory beyond the memlock limit of the user dropped to
        raise InstanceError(f"mmap(): {exc.strerror} (the scoreboard)") from None
    buffer_size = int(config.get("buffer-size") or 4096)
    try:
        uwsgi_module.install(config, version, processes, os.getpid(), board, sockets, buffer_size)
    except uwsgi_module.ApiError as exc:
        raise InstanceError(str(exc)) from None
    extras = background.current()  # signals, spooler, mules: hooks for the workers and the stats
    extras.title = lambda role: _procname(config, role)
    _pythonpath(config)
    process_setup.set_pyargv(config)
    try:
        process_setup.apply_pymodule_aliases(config)
    except process_setup.SetupError as exc:
        raise InstanceError(str(exc)) from None
    for mod in config.getlist("shared-import"):
        __import__(mod)
    if config.get("chdir"):
        try:
            os.chdir(config.get("chdir"))
        except OSError as exc:
            raise InstanceError(f"chdir {config.get('chdir')}: {exc.strerror}") from None
        log(f"chdir() to {config.get('chdir')}")
    log(f"your server socket listen backlog is limited to {int(config.get('listen') or 100)} connections")
    log(f"your mercy for graceful operations on workers is {int(config.get('worker-reload-mercy') or 60)} seconds")
    lazy = bool(config.get("lazy-apps") or config.get("lazy"))
    # uWSGI 2.0 goes on without an app unless need-app; we exit when an app was named and
    # failed to load (as uWSGI 2.1 does by default), and `need-app = false` restores 2.0's way
    need_app: bool | None = bool(config.get("need-app")) if config.has("need-app") else None
    if config.get("vhost") or config.get("vhost-host"):
        log("VirtualHosting mode enabled.")
    log(f"*** Operational MODE: {'preforking' if processes > 1 else 'single process' if processes else 'no-workers'}"
        f"{'+threaded' if threads > 1 else ''} ***")
    apps: AppTable | None = None
    if not lazy:
        for mod in config.getlist("import"):
            __import__(mod)
        try:
            apps = _load_apps(config, need_app, in_worker=False, plan=plan)
        except SystemExit as exc:
            return int(exc.code or 0)
        if config.get("chdir2"):
            os.chdir(config.get("chdir2"))
    if config.get("daemonize2"):
        _daemonize2(config, link, reloading)
    settings = _settings(config, version, link)
    if plan.wants_accepting():
        settings.on_accepting = lambda wid: plan.accepting(wid, board.workers[wid].respawn_count == 1)
    settings.reload_on_exception = reload_on_exception_rule(config)

    stats_server = None
    stats_source = None
    extra_services: list[Service] = []  # the Prometheus endpoint
    if config.get("stats"):
        try:
            stats_server = StatsService(config.get("stats"), bool(config.get("stats-http")),
                                        bool(config.get("stats-minified")),
                                        lambda minified: generate(stats_source, minified),
                                        timeout=float(config.get("socket-timeout") or 4))
        except (OSError, ValueError) as exc:
            raise InstanceError(str(exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)) from None
    if config.get("prometheus"):
        from vassal.metrics import prometheus

        try:
            extra_services.append(prometheus.service(config.get("prometheus"), board, sockets,
                                                     metrics_api.table(),
                                                     float(config.get("socket-timeout") or 4)))
        except (OSError, ValueError) as exc:
            raise InstanceError(str(exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)) from None
    if config.get("stats") or metrics_api.needs_stats_document(config):
        minified = bool(config.get("stats-minified"))
        metrics_api.set_stats_document(
            lambda: generate(stats_source, minified).encode("utf-8", "surrogateescape"))
        app_info = [{"mountpoint": a.mountpoint, "startup_time": a.startup_time,
                     "chdir": config.get("chdir") or ""} for a in (apps.apps if apps else [])]
        stats_source = StatsSource(version, sockets, board, app_info, int(config.get("listen") or 100),
                                   bool(config.get("stats-no-cores")))
        stats_source.api_parts = uwsgi_module.stats_parts
        stats_source.sections += extras.stats_sections()
        stats_source.signal_queue = extras.signals.queued
        stats_source.can_offload = 1 if settings.offload_threads else 0
    if apps is not None:
        for i in range(1, processes + 1):
            board.workers[i].app_loaded = 1 if apps.apps else 0

    def spawn_worker(wid: int) -> None:
        if master.zerg_server is not None:
            master.zerg_server.close()
        if master.link is None and link is not None:
            link.close()  # the master already said goodbye to the emperor
        for service in master.services:
            service.in_worker(wid)
        uwsgi_module.set_worker_id(wid)
        extras.in_worker(wid)
        _set_title(_procname(config, f"worker {wid}"))
        extras.post_fork()
        plan.worker_phase("post-fork")
        table = apps
        if table is None:
            for mod in config.getlist("import"):
                __import__(mod)
            try:
                table = _load_apps(config, need_app, in_worker=True, plan=plan)
            except SystemExit as exc:
                os._exit(int(exc.code or 0))
            board.workers[wid].app_loaded = 1 if table.apps else 0
            if stats_source is not None and not stats_source.apps and table.apps:
                stats_source.apps = [{"mountpoint": a.mountpoint, "startup_time": a.startup_time,
                                      "chdir": config.get("chdir") or ""} for a in table.apps]
            if config.get("chdir2"):
                os.chdir(config.get("chdir2"))
        worker = Worker(wid, sockets, table, board, settings)
        worker.watch.update(extras.watch())  # signal pipes, handled between requests
        worker_main(worker)

    def cleanup() -> None:
        if config.get("vacuum"):
            for ls in sockets:
                if ls.family == socket.AF_UNIX and not ls.name.startswith("@"):
                    try:
                        os.unlink(ls.name)
                    except OSError:
                        pass
            for opt in ("pidfile", "pidfile2", "safe-pidfile", "safe-pidfile2"):
                if config.get(opt):
                    try:
                        os.unlink(config.get(opt))
                    except OSError:
                        pass

    if lazy and stats_source is not None and not stats_source.apps:
        # lazy apps load in the workers; describe them from the config for the stats
        names = [("", 0)] if (config.get("wsgi-file") or config.get("module")) else []
        names += [(m.partition("=")[0].rstrip("/"), 0) for m in config.getlist("mount")]
        stats_source.apps = [{"mountpoint": mp, "startup_time": st, "chdir": config.get("chdir") or ""}
                             for mp, st in names]
        for i in range(1, processes + 1):
            board.workers[i].app_loaded = 1
    _set_title(_procname(config, "master"))
    try:
        master = Master(config=config, sockets=sockets, board=board, spawn_worker=spawn_worker, link=link,
                        stats_source=stats_source, original_cwd=original_cwd,
                        cleanup=cleanup, lazy_need_app=lazy and need_app is not False,
                        services=_services(config, plan, scaling) + ([stats_server] if stats_server else [])
                        + extra_services + _zergpool_service(pools))
    except OSError as exc:
        raise InstanceError(exc.strerror or str(exc)) from None
    try:
        plan.open_fifo()
    except PlanError as exc:
        raise InstanceError(str(exc)) from None
    if stats_source is not None:
        stats_source.daemons = plan.daemon_stats
    log(f"spawned uWSGI master process (pid: {os.getpid()})")
    return master.run()
