"""The one option table: every option Imperium understands, with its uWSGI name.

Parsing (``vassal.config``), ``--help`` and the docs all come from ``OPTIONS``. Names,
aliases and short letters follow uWSGI 2.0 (core/uwsgi.c and the python/http plugins) so that
existing ini/xml/yaml/json files and emperor-built command lines work unchanged. Options that
uWSGI has but that make no sense here (or are not implemented yet) are still listed, marked
``ignored``: a real-world config that uses them loads without complaint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

VERSION = "2.0.21-imperium-0.1.0"


@dataclass(frozen=True)
class Option:
    """One option: how it is spelled, what its value is, and what it does."""

    name: str
    type: type = str  # str, int, float or bool (a flag)
    default: Any = None
    repeat: bool = False  # every occurrence is kept (getlist); otherwise the last one wins
    help: str = ""
    aliases: tuple[str, ...] = ()
    short: str | None = None  # one letter, as in ``-M``
    #: value used when the option is given without one (``chmod-socket`` alone means 666);
    #: None means a value is required (flags never need one).
    implicit: str | None = None
    ignored: bool = False  # accepted for compatibility, has no effect here
    section: str = "instance"
    #: handled by the config loader itself (ini, include, set, ...), not a setting
    loader: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def takes_value(self) -> bool:
        return self.type is not bool


OPTIONS: dict[str, Option] = {}
ALIASES: dict[str, str] = {}  # every spelling (name and aliases) -> canonical name
SHORT: dict[str, str] = {}  # short letter -> canonical name (first one registered wins)


def _add(name: str, type_: type = str, default: Any = None, help: str = "", *, repeat: bool = False,
         aliases: tuple[str, ...] = (), short: str | None = None, implicit: str | None = None,
         ignored: bool = False, section: str, loader: bool = False) -> None:
    if name in ALIASES:
        raise ValueError(f"option {name} defined twice")
    opt = Option(name, type_, default, repeat, help, aliases, short, implicit, ignored, section, loader)
    OPTIONS[name] = opt
    for spelling in (name, *aliases):
        if spelling in ALIASES:
            raise ValueError(f"option spelling {spelling} defined twice")
        ALIASES[spelling] = name
    if short:
        SHORT.setdefault(short, name)


def _ignored(section: str, *names: str, type_: type = str, repeat: bool = False) -> None:
    for name in names:
        _add(name, type_, None, "accepted for uWSGI compatibility; no effect", repeat=repeat,
             ignored=True, section=section)


# --- config loading: handled by vassal.config while reading, never stored as settings -------
S = "config"
_add("ini", str, None, "load options from an ini file (FILE[:section], default section uwsgi)", repeat=True,
     section=S, loader=True)
_add("xml", str, None, "load options from an xml file (FILE[:id])", repeat=True, aliases=("xmlconfig",),
     short="x", section=S, loader=True)
_add("yaml", str, None, "load options from a yaml file (FILE[:section])", repeat=True, aliases=("yml",),
     short="y", section=S, loader=True)
_add("json", str, None, "load options from a json file (FILE[:section])", repeat=True, aliases=("js",),
     short="j", section=S, loader=True)
_add("config", str, None, "load options from a file, the format chosen by its extension", repeat=True,
     section=S, loader=True)
_add("include", str, None, "read another config file here, as if its options were written in place",
     repeat=True, section=S, loader=True)
_add("inherit", str, None, "read another config file as a base (same as include in this implementation)",
     repeat=True, section=S, loader=True)
_add("set", str, None, "KEY=VALUE: set an option, or a placeholder when KEY is not an option",
     repeat=True, short="S", section=S, loader=True)
_add("declare-option", str, None, "declare a custom option (not supported here)", repeat=True, section=S,
     ignored=True)
for _name, _aliases in (("for", ()), ("for-glob", ()), ("for-times", ()), ("for-readline", ()),
                        ("if-env", ("ifenv",)), ("if-not-env", ()), ("if-opt", ()), ("if-not-opt", ()),
                        ("if-exists", ("ifexists",)), ("if-not-exists", ()), ("if-file", ()),
                        ("if-not-file", ()), ("if-dir", ("ifdir", "if-directory")), ("if-not-dir", ()),
                        ("if-hostname", ()), ("if-not-hostname", ()), ("if-plugin", ("ifplugin",)),
                        ("if-not-plugin", ())):
    _add(_name, str, None, "config logic: apply the following options per item/if true, up to end*",
         repeat=True, aliases=_aliases, section=S, loader=True)
for _name, _aliases in (("if-reload", ()), ("if-not-reload", ())):
    _add(_name, bool, False, "config logic: apply the following options only on (not) reload",
         aliases=_aliases, section=S, loader=True)
for _name, _aliases in (("endfor", ("end-for",)), ("endif", ("end-if",)), ("end", ())):
    _add(_name, str, None, "config logic: end a for/if block", aliases=_aliases, implicit="", section=S,
         loader=True)
del _name, _aliases
_add("set-placeholder", str, None, "KEY=VALUE: set a placeholder only", repeat=True, aliases=("set-ph",),
     section=S, loader=True)
_add("strict", bool, False, "refuse config keys that are not options (else kept as placeholders)",
     section=S)
_add("show-config", bool, False, "print the resolved config as ini and carry on", section=S)
_add("print", str, None, "print the value while the config is read", repeat=True, section=S, loader=True)
_add("help", bool, False, "show this help and exit", aliases=("usage",), short="h", section=S, loader=True)
_add("version", bool, False, "print the version and exit", section=S, loader=True)
_add("plugin", str, None, "load plugins (comma separated); built in here, so nothing is needed",
     repeat=True, aliases=("plugins", "need-plugin", "need-plugins"), section=S)
_add("plugins-dir", str, None, "where to look for plugins; not needed here", repeat=True,
     aliases=("plugin-dir",), section=S)
_add("plugins-list", bool, False, "list the built-in plugins", aliases=("plugin-list",), section=S, ignored=True)

# --- instance: sockets ---------------------------------------------------------------------
S = "instance"
_add("socket", str, None, "bind a socket speaking the uwsgi protocol (host:port or UNIX path)", repeat=True,
     aliases=("uwsgi-socket",), short="s", section=S)
_add("http-socket", str, None, "bind a socket speaking plain HTTP to the workers", repeat=True, section=S)
_add("http11-socket", str, None, "bind an HTTP socket (keep-alive: the same as http-socket here)",
     repeat=True, section=S)
_add("protocol", str, None, "protocol of the plain `socket` entries and of sockets given without one "
     "(fd 0 of an on-demand vassal, a zerg server's): uwsgi (default) or http",
     aliases=("socket-protocol",), section=S)
_add("http", str, None, "serve HTTP on this address (uWSGI's router; here: an HTTP socket)", repeat=True,
     section=S)
_add("shared-socket", str, None, "bind a socket in the master to be referenced as =N by other options",
     repeat=True, section=S)
_add("zerg", str, None, "attach to a zerg server and use the sockets it hands out", repeat=True, section=S)
_add("zerg-server", str, None, "pass this instance's sockets to zergs on this UNIX socket", section=S)
_add("zergpool", str, None, "ZERGSOCKET:ADDR[,ADDR...]: bind the ADDRs and hand them to every zerg that "
     "connects to the UNIX socket ZERGSOCKET", repeat=True, aliases=("zerg-pool",), section=S)
_add("zerg-fallback", bool, False, "bind own sockets when the zerg server cannot be reached", section=S)
_add("chmod-socket", str, None, "permissions of UNIX sockets (alone: 666)", aliases=("chmod",), short="C",
     implicit="666", section=S)
_add("chown-socket", str, None, "owner[:group] of UNIX sockets", section=S)
_add("listen", int, 100, "listen queue size of the sockets", short="l", section=S)
_add("abstract-socket", bool, False, "UNIX sockets in the abstract namespace", short="a", section=S)
_add("so-keepalive", bool, False, "enable TCP keepalive on the sockets", section=S)
_add("socket-timeout", int, 4, "seconds of socket inactivity before a request is dropped; also the "
     "time a whole request head gets to arrive", short="z", section=S)
_add("enable-proxy-protocol", bool, False, "HTTP sockets read a PROXY v1 line opening a connection (the "
     "client's address behind a load balancer)", section=S)
_add("http-enable-proxy-protocol", bool, False, "the same as enable-proxy-protocol (http = here is an "
     "HTTP socket)", section=S)
_add("http-timeout", int, 60, "seconds an idle keep-alive HTTP connection is kept", section=S)
_add("http-headers-timeout", int, 0, "seconds a whole HTTP request head gets to arrive "
     "(0: socket-timeout)", section=S)
_add("http-keepalive", int, 1, "HTTP/1.1 keep-alive (always on here); a value above 1 is the idle "
     "timeout in seconds", implicit="1", section=S)
_add("no-defer-accept", bool, False, "do not set TCP_DEFER_ACCEPT on TCP sockets", section=S)
_add("reuse-port", bool, False, "set SO_REUSEPORT on TCP sockets (several instances on one port)",
     section=S)
_add("tcp-nodelay", bool, False, "TCP_NODELAY on client connections (always set here)", section=S)
_add("http-socket-modifier1", int, 0, "uwsgi modifier1 for HTTP sockets", section=S, ignored=True)
_add("http-socket-modifier2", int, 0, "uwsgi modifier2 for HTTP sockets", section=S, ignored=True)
_add("http-auto-chunked", bool, False, "chunk HTTP/1.1 responses without a length", section=S)
_add("add-header", str, None, "add this 'Name: value' header to every response", repeat=True, section=S)
_add("buffer-size", int, 4096, "largest request header block accepted (bytes)", short="b", section=S)
_add("post-buffering", int, 0, "read whole request bodies before the app runs: in memory below this "
     "many bytes, in a temporary file from it on", section=S)
_add("post-buffering-bufsize", int, 8192, "read size of post-buffering (at least post-buffering)",
     section=S)
_add("wsgi-disable-file-wrapper", bool, False, "leave wsgi.file_wrapper out of the environ", section=S)
_add("disable-write-exception", bool, False, "no OSError in the app when writing to the client fails",
     section=S)
_add("ignore-sigpipe", bool, False, "do not log writes to a client that went away (SIGPIPE)", section=S)
_add("ignore-write-errors", bool, False, "do not log failed writes to the client", section=S)
_add("limit-post", int, 0, "refuse request bodies larger than this many bytes (0: no limit)", section=S)
_add("honour-stdin", bool, False, "leave stdin alone instead of reopening it on /dev/null", section=S)
_add("close-on-exec", bool, False, "mark request sockets close-on-exec (always so: Python's default)", section=S)
_add("close-on-exec2", bool, False, "mark server sockets close-on-exec (always so between reloads)", section=S)
_add("catch-exceptions", bool, False, "show exceptions in the HTTP response (development only)", section=S)

# --- instance: processes -------------------------------------------------------------------
_add("master", bool, False, "run a master process that supervises the workers", short="M", section=S)
_add("processes", int, 1, "number of worker processes", aliases=("workers",), short="p", section=S)
_add("threads", int, 1, "threads per worker", section=S)
_add("gevent", int, 0, "the gevent loop engine with this many async cores per worker", section=S)
_add("gevent-monkey-patch", bool, False, "gevent.monkey.patch_all() when each worker's loop starts",
     section=S)
_add("gevent-early-monkey-patch", bool, False, "gevent.monkey.patch_all() before the app is loaded",
     section=S)
_add("enable-threads", bool, False, "let the app start threads (always possible here)", short="T", section=S)
_add("lazy-apps", bool, False, "load the app in each worker after the fork instead of in the master",
     section=S)
_add("lazy", bool, False, "like lazy-apps, and reload workers one by one", section=S)
_add("single-interpreter", bool, False, "one interpreter per worker (always the case here)", short="i",
     section=S)
_add("thunder-lock", bool, False, "serialize accept() (always: one waiter wakes per connection, "
     "EPOLLEXCLUSIVE)", section=S)
_add("max-requests", int, 0, "recycle a worker after this many requests (0: never)", short="R", section=S)
_add("max-worker-lifetime", int, 0, "recycle a worker after this many seconds (0: never)", section=S)
_add("max-worker-lifetime-delta", int, 0, "add worker-id times this to max-worker-lifetime", section=S)
_add("reload-on-rss", int, 0, "recycle a worker whose RSS exceeds this many megabytes after a request",
     section=S)
_add("evil-reload-on-rss", int, 0, "kill a worker whose RSS exceeds this many megabytes, checked by the master",
     section=S)
_add("reload-on-as", int, 0, "recycle a worker whose address space exceeds this many megabytes", section=S)
_add("evil-reload-on-as", int, 0, "kill a worker whose address space exceeds this many megabytes", section=S)
_add("harakiri", int, 0, "kill a worker stuck in one request longer than this many seconds", short="t",
     section=S)
_add("harakiri-verbose", bool, False, "log the stuck worker's syscall and wchan on harakiri", section=S)
_add("reload-mercy", int, 60, "seconds to wait for workers (or vassals) to stop on reload/shutdown",
     section=S)
_add("worker-reload-mercy", int, 60, "seconds a worker gets to finish before it is killed", section=S)
_add("mule-reload-mercy", int, 60, "seconds a mule gets to stop on reload/shutdown before it is killed",
     section=S)
_add("die-on-term", bool, False, "SIGTERM shuts down instead of reloading", section=S)
_add("exit-on-reload", bool, False, "exit instead of reloading", section=S)
_add("idle", int, 0, "after this many idle seconds go to sleep (cheap mode)", section=S)
_add("die-on-idle", bool, False, "exit instead of sleeping when idle", section=S)
_add("need-app", bool, False, "exit if the app cannot be loaded", implicit="1", section=S)
_add("heartbeat", int, 0, "send a heartbeat to the emperor every this many seconds", section=S)
_add("cheaper", int, 0, "cheaper mode: the fewest workers kept running; an algorithm adds more up to processes",
     section=S)
_add("cheaper-initial", int, 0, "workers started at boot in cheaper mode (default: cheaper)", section=S)
_add("cheaper-step", int, 1, "workers added at a time in cheaper mode", section=S)
_add("cheaper-algo", str, None, "cheaper algorithm: spare (default), spare2, backlog, busyness, manual", section=S)
_add("cheaper-overload", int, 3, "spare: busy cycles before adding workers; backlog: queue length; "
     "busyness: window, seconds", section=S)
_add("cheaper-idle", int, 10, "spare2: idle cycles before a worker is cheaped", section=S)
_add("cheaper-rss-limit-soft", int, 0, "no new worker while the workers' total RSS is this many bytes or more",
     section=S)
_add("cheaper-rss-limit-hard", int, 0, "cheap a worker while the workers' total RSS is this many bytes or more",
     section=S)
_add("cheaper-algo-list", bool, False, "list the cheaper algorithms", aliases=("cheaper-algos-list", "cheaper-list"),
     section=S)
_add("cheaper-busyness-max", int, 50, "busyness: above this percent, add workers", section=S)
_add("cheaper-busyness-min", int, 25, "busyness: below this percent, count idle windows", section=S)
_add("cheaper-busyness-multiplier", int, 10, "busyness: idle windows before a worker is cheaped", section=S)
_add("cheaper-busyness-penalty", int, 2, "busyness: added to the multiplier when a cheaped worker is needed "
     "again too soon", section=S)
_add("cheaper-busyness-verbose", bool, False, "busyness: log every decision", section=S)
_add("cheaper-busyness-backlog-alert", int, 33, "busyness: a listen queue longer than this adds emergency workers",
     section=S)
_add("cheaper-busyness-backlog-multiplier", int, 3, "busyness: idle windows before an emergency worker is cheaped",
     section=S)
_add("cheaper-busyness-backlog-step", int, 1, "busyness: emergency workers added at a time", section=S)
_add("cheaper-busyness-backlog-nonzero", int, 60, "busyness: a listen queue non-empty this many seconds adds "
     "emergency workers", section=S)
_add("touch-reload", str, None, "reload when this file's mtime changes", repeat=True, section=S)
_add("touch-workers-reload", str, None, "reload only the workers when this file changes", repeat=True,
     section=S)
_add("touch-chain-reload", str, None, "reload workers one by one when this file changes", repeat=True,
     section=S)
_add("py-autoreload", int, 0, "reload when a loaded python module changes, checking every N seconds",
     aliases=("py-auto-reload", "python-autoreload", "python-auto-reload"), section=S)
_add("py-autoreload-ignore", str, None, "module py-autoreload does not watch", repeat=True,
     aliases=("py-auto-reload-ignore",), section=S)
_add("stats", str, None, "serve the stats JSON on this address", aliases=("stats-server",), section=S)
_add("stats-http", bool, False, "prefix the stats JSON with HTTP headers", section=S)
_add("stats-minified", bool, False, "compact stats JSON", aliases=("stats-min",), section=S)
_add("stats-no-cores", bool, False, "leave per-core data out of the stats", section=S)
_add("stats-no-metrics", bool, False, "leave the metrics out of the stats document", section=S)
_add("prometheus", str, None, "serve this instance's Prometheus metrics on HTTP ADDR (/metrics)",
     section=S)
_add("connect-and-read", str, None, "connect to a socket, print what it sends and exit", section=S)
_add("memory-report", bool, False, "log memory usage after each request", short="m", section=S)
_add("vacuum", bool, False, "remove UNIX sockets and pidfiles on exit", section=S)
_add("emperor-fd", int, None, "the emperor fd (normally found in UWSGI_EMPEROR_FD)", section=S)
_add("emperor-fd-config", int, None, "the emperor config fd (normally UWSGI_EMPEROR_FD_CONFIG)", section=S)
_add("vassal-sos", int, 0, "ask the emperor for reinforcements when busy for this many seconds", section=S)
_add("vassal-sos-backlog", int, 0, "ask the emperor for reinforcements when this many requests wait",
     section=S)

# --- instance: process identity and environment --------------------------------------------
_add("chdir", str, None, "chdir here before loading the app (in the master)", section=S)
_add("chdir2", str, None, "chdir here after loading the app", section=S)
_add("force-cwd", str, None, "chdir here before anything else", section=S)
_add("env", str, None, "KEY=VALUE: set an environment variable (KEY alone: unset it)", repeat=True,
     section=S)
_add("unenv", str, None, "remove an environment variable", repeat=True, section=S)
_add("pidfile", str, None, "write the master pid here (before dropping privileges)", section=S)
_add("pidfile2", str, None, "write the master pid here (after dropping privileges)", section=S)
_add("safe-pidfile", str, None, "write the master pid here once the instance is up (workers spawned)",
     section=S)
_add("safe-pidfile2", str, None, "the same as safe-pidfile (uWSGI 2.0 writes both at the same point)",
     section=S)
_add("umask", str, None, "set the umask (three octal digits, e.g. 022) before anything else", section=S)
_add("daemonize", str, None, "detach and log to this file", short="d", section=S)
_add("daemonize2", str, None, "detach after loading the app, logging to this file", section=S)
_add("uid", str, None, "drop privileges to this user (name or number)", section=S)
_add("gid", str, None, "drop privileges to this group (name or number)", section=S)
_add("procname", str, None, "name of the processes", section=S)
_add("procname-prefix", str, None, "prefix for process names", section=S)
_add("procname-prefix-spaced", str, None, "prefix for process names, followed by a space", section=S)
_add("procname-append", str, None, "suffix for process names", section=S)
_add("procname-master", str, None, "name of the master process", section=S)
_add("auto-procname", bool, False, "give processes meaningful names (uWSGI master, worker 1, ...)",
     section=S)
_add("mount", str, None, "MOUNTPOINT=APP: mount an app (file or module) at a URL prefix", repeat=True,
     section=S)
_add("manage-script-name", bool, False, "route requests to mounted apps by SCRIPT_NAME prefix", section=S)
_add("no-default-app", bool, False, "no fallback app: a request no mountpoint matches gets a 500", section=S)
_add("vhost", bool, False, "virtual hosting: apps are chosen by HOST|SCRIPT_NAME (mount = HOST|=APP)", section=S)
_add("vhost-host", bool, False, "the same as vhost (uWSGI 2.0 makes no difference)", section=S)

# --- instance: static files (vassal/protocols/static.py) -----------------------------------
_add("static-map", str, None, "MOUNTPOINT=DIR (or FILE): serve static files under MOUNTPOINT from DIR",
     repeat=True, section=S)
_add("static-map2", str, None, "MOUNTPOINT=DIR: like static-map, appending the whole PATH_INFO to DIR",
     repeat=True, section=S)
_add("check-static", str, None, "serve DIR + PATH_INFO when that file exists", repeat=True,
     aliases=("static-check",), section=S)
_add("check-static-docroot", bool, False, "serve the request's DOCUMENT_ROOT + PATH_INFO when it exists",
     section=S)
_add("static-index", str, None, "file to serve when a static directory is requested", repeat=True, section=S)
_add("static-skip-ext", str, None, "never serve static files with this extension (suffix)", repeat=True,
     section=S)
_add("static-safe", str, None, "serve static files resolving (through symlinks) under this path too",
     repeat=True, section=S)
_add("mimefile", str, None, "mime.types file for static Content-Types (default /etc/mime.types)",
     repeat=True, aliases=("mime-file",), section=S)
for _name, _help in (("static-expires", "REGEXP SECONDS: Expires now+SECONDS for files whose name matches"),
                     ("static-expires-mtime", "REGEXP SECONDS: Expires mtime+SECONDS for matching file names"),
                     ("static-expires-uri", "REGEXP SECONDS: Expires now+SECONDS when REQUEST_URI matches"),
                     ("static-expires-uri-mtime", "REGEXP SECONDS: Expires mtime+SECONDS when REQUEST_URI matches"),
                     ("static-expires-path-info", "REGEXP SECONDS: Expires now+SECONDS when PATH_INFO matches"),
                     ("static-expires-path-info-mtime",
                      "REGEXP SECONDS: Expires mtime+SECONDS when PATH_INFO matches"),
                     ("static-expires-type", "TYPE=SECONDS: Expires now+SECONDS for this Content-Type"),
                     ("static-expires-type-mtime", "TYPE=SECONDS: Expires mtime+SECONDS for this Content-Type")):
    _add(_name, str, None, _help, repeat=True, section=S)
del _name, _help
_add("static-gzip", str, None, "REGEXP: serve FILE.gz (or .br) when the file name matches and the client "
     "accepts it", repeat=True, section=S)
_add("static-gzip-all", bool, False, "serve FILE.gz (or .br) for every static file when the client accepts it",
     section=S)
_add("static-gzip-dir", str, None, "serve FILE.gz (or .br) for files under this prefix", repeat=True,
     aliases=("static-gzip-prefix",), section=S)
_add("static-gzip-ext", str, None, "serve FILE.gz (or .br) for files with this suffix", repeat=True,
     aliases=("static-gzip-suffix",), section=S)
_add("honour-range", bool, False, "answer Range requests for static files (206/416)", section=S)
_add("file-serve-mode", str, None, "x-sendfile or x-accel-redirect (nginx): name the file in a header and "
     "let the front server send it", aliases=("fileserve-mode",), section=S)
_add("offload-threads", int, 0, "threads per worker that send static files and file_wrapper bodies, "
     "freeing the worker", aliases=("offload-thread",), section=S)
_add("disable-sendfile", bool, False, "copy file bodies with read()/write() instead of sendfile()", section=S)
_add("static-cache-paths", int, 0, "cache resolved static paths (resolved per request here)", section=S,
     ignored=True)
_add("static-cache-paths-name", str, None, "cache used for static paths", section=S, ignored=True)
_add("app", str, None, "(xml <app>) marks an app entry; not needed: the mount carries the app",
     repeat=True, section=S)
# --- instance: internal routing (vassal/routing) --------------------------------------------
for _prefix, _chain in (("route", "request"), ("final-route", "final"), ("error-route", "error"),
                        ("response-route", "response")):
    for _suffix, _help in (("", "REGEXP ACTION: a rule on PATH_INFO"), ("-host", "REGEXP ACTION: a rule on HTTP_HOST"),
                           ("-uri", "REGEXP ACTION: a rule on REQUEST_URI"),
                           ("-qs", "REGEXP ACTION: a rule on QUERY_STRING"),
                           ("-remote-addr", "REGEXP ACTION: a rule on REMOTE_ADDR"),
                           ("-user-agent", "REGEXP ACTION: a rule on HTTP_USER_AGENT"),
                           ("-remote-user", "REGEXP ACTION: a rule on REMOTE_USER"),
                           ("-referer", "REGEXP ACTION: a rule on HTTP_REFERER"),
                           ("-label", "NAME: a label for goto"), ("-if", "CONDITION:ARGS ACTION: a rule on a condition"),
                           ("-if-not", "CONDITION:ARGS ACTION: a rule on a condition, negated"),
                           ("-run", "ACTION: always run this action"),
                           ("-status", "STATUS ACTION: a rule on the response status")):
        if _suffix == "-status" and _chain == "request":
            continue
        _add(_prefix + _suffix, str, None, f"{_help} (the {_chain} routing chain)", repeat=True, section=S)
del _prefix, _chain, _suffix, _help
_add("collect-header", str, None, "HEADER VAR: copy this response header into a request variable", repeat=True,
     aliases=("response-header-collect",), section=S)
_add("pull-header", str, None, "HEADER VAR: move this response header into a request variable (not sent)",
     repeat=True, section=S)
_add("del-header", str, None, "never send this response header (the app's or a static file's)", repeat=True,
     section=S)
_add("reaper", bool, False, "reap the app's exited child processes after each request", short="r", section=S)
_add("cgi-mode", bool, False, "CGI mode for plugins supporting it", short="c", section=S, ignored=True)
_add("max-vars", int, 0, "number of internal request variables", short="v", section=S, ignored=True)
_add("sharedarea", str, None, "a shared memory area of N pages (or keyval: pages=,size=,file=)", short="A",
     repeat=True, section=S)
# --- the uwsgi module's shared state (vassal/api) --------------------------------------------
_add("cache", int, None, "create the default shared cache holding this many items (minus one)", section=S)
_add("cache-blocksize", int, 65536, "largest value of the default cache (bytes)", section=S)
_add("cache-store", str, None, "keep the default cache in this file (survives restarts)", section=S)
_add("cache-store-sync", int, 0, "ask the kernel to write cache stores out every N seconds", section=S)
_add("cache-no-expire", bool, False, "do not sweep expired cache items", section=S)
_add("cache-expire-freq", int, 3, "seconds between two sweeps of expired cache items", section=S)
_add("cache-report-freed-items", bool, False, "log how many items each sweep freed", section=S)
_add("cache-use-last-modified", bool, False, "keep last_modified_at of the default cache up to date", section=S)
_add("cache2", str, None, "create a named cache (keyval: name=,items=,blocksize=,blocks=,keysize=,store=,...)",
     repeat=True, section=S)
_add("add-cache-item", str, None, "[CACHE ]KEY=VALUE: store an item in the cache at startup", repeat=True,
     section=S)
_add("load-file-in-cache", str, None, "[CACHE ]PATH: store a file's content in the cache at startup", repeat=True,
     section=S)
_add("cache-udp-server", str, None, "cache replication (refused: not supported)", repeat=True, section=S)
_add("cache-udp-node", str, None, "cache replication (refused: not supported)", repeat=True, section=S)
_add("cache-sync", str, None, "copy a remote cache at startup (refused: not supported)", section=S)
_add("locks", int, 0, "create N+1 user locks (uwsgi.lock(0..N))", section=S)
_add("rpc-max", int, 64, "most RPC functions a process may register", section=S)
_ignored(S, "legion",
         "cpu-affinity", "alarm",
         "websockets-max-size", "worker-exec",
         "https-socket", "ssl-socket",
         "snmp", "log-alarm",
         "listen-queue-alarm", "wsgi-env-behaviour", "wsgi-env-behavior",
         "http-modifier1", "http-var", "http-stats", "http-processes",
         "http-workers", "http-socket-protocol", "offload-threads-stacksize",
         "threads-stacksize", "threads-stack-size", "buffer-size-workers", "async",
         "asyncio", "tornado", "py-tracebacker",
         "py-sharedarea", "max-apps", "backtrace-depth", "env-file", "envdir")
_ignored(S, "reload-on-fd", "brutal-reload-on-fd", "mount-check", "mountpoint-check",
         repeat=True)
_ignored(S, "no-threads-wait", "pcre-jit",
         "skip-atexit", "skip-atexit-teardown", "freebind",
         "ssl-verbose", "http-raw-body", "http-websockets",
         "lazy-apps-fallback", "ugreen", "greenlet", "stackless",          "master-as-root", "ksm", "python-worker-override", type_=bool)

# --- instance: its own jail (vassal.jail, vassal.namespace) ---------------------------------
_add("unshare", str, None, "enter new namespaces (comma list: fs/mount, net, ipc, uts, user) as root, "
     "after the sockets are bound", section=S)
_add("unshare2", str, None, "like unshare, after chroot/pivot-root", section=S)
_add("chroot", str, None, "chroot() here as root, before dropping privileges", section=S)
_add("pivot-root", str, None, "NEW_ROOT PUT_OLD: pivot_root() as root, before dropping privileges",
     aliases=("pivot_root",), section=S)
_add("namespace", str, None, "ROOTFS[:HOSTNAME]: run jailed in new pid/uts/ipc/mount namespaces under "
     "ROOTFS (a keeper outside respawns the jail)", aliases=("ns",), section=S)
_add("namespace-keep-mount", str, None, "PATH or SOURCE:DEST: a mount kept in the namespace jail",
     repeat=True, section=S)
_add("namespace-net", str, None, "also a new network namespace for the namespace jail",
     aliases=("ns-net",), section=S)
_add("cap", str, None, "capabilities kept across the privilege drop (comma list of names or numbers)",
     section=S)
_add("cgroup", str, None, "put the instance in this cgroup (an absolute path, or a name under the "
     "current cgroup: v2 if usable, else v1 memory/cpu/pids)", repeat=True, section=S)
_add("cgroup-opt", str, None, "KEY=VALUE written in the cgroups (memory.max or memory.limit_in_bytes, "
     "cpu.max, cpu.weight, pids.max...)", repeat=True, section=S)
_add("cgroup-dir-mode", str, "0700", "mode of the cgroup directories made", section=S)
_add("limit-as", int, 0, "limit the address space of every process to this many megabytes", section=S)
_add("limit-nproc", int, 0, "limit the number of processes of the instance's user (RLIMIT_NPROC)",
     aliases=("rlimit-nproc",), section=S)
# --- instance: metrics and stats pushers (vassal.metrics, vassal.api.metrics) ---------------
_add("enable-metrics", bool, False, "enable the metrics subsystem (uwsgi.metric_*, metrics in the stats)",
     section=S)
_add("metric", str, None, "NAME or name=,type=,collector=,...: add a custom metric (enables metrics)",
     repeat=True, section=S)
_add("metric-threshold", str, None, "key=METRIC,value=N,reset=M: reset a metric when it reaches N",
     repeat=True, aliases=("metric-alarm", "alarm-metric"), section=S)
_add("metrics-dir", str, None, "keep a text file per metric in this directory", aliases=("metric-dir",),
     section=S)
_add("metrics-dir-restore", bool, False, "start from the values found in metrics-dir",
     aliases=("metric-dir-restore",), section=S)
_add("metrics-no-cores", bool, False, "no per-core metrics", section=S)
_add("stats-push", str, None, "PUSHER:ARGS: push metrics or the stats JSON (statsd, socket, carbon, file, "
     "mongodb)", repeat=True, section=S)
_add("stats-pusher-default-freq", int, 3, "seconds between two pushes of a pusher without freq",
     aliases=("stats-pushers-default-freq",), section=S)
_add("carbon", str, None, "HOST:PORT: push statistics to this carbon server", repeat=True, section=S)
_add("carbon-timeout", int, 3, "carbon connection timeout, seconds", section=S)
_add("carbon-freq", int, 60, "seconds between two carbon pushes", section=S)
_add("carbon-id", str, None, "carbon id of this instance (default: its first socket, dots as _)",
     section=S)
_add("carbon-no-workers", bool, False, "no per-worker carbon metrics", section=S)
_add("carbon-max-retry", int, 0, "retries of a failed carbon push", section=S)
_add("carbon-retry-delay", int, 7, "seconds before retrying a failed carbon push", section=S)
_add("carbon-root", str, "uwsgi", "root node of the carbon metrics", section=S)
_add("carbon-hostname-dots", str, None, "character replacing the dots of the hostname in carbon names",
     section=S)
_add("carbon-name-resolve", bool, False, "carbon servers may be given by host name",
     aliases=("carbon-resolve-names",), section=S)
_add("carbon-idle-avg", str, "last", "avg_rt pushed while idle: last, zero or none", section=S)
_add("carbon-use-metrics", bool, False, "push the metrics subsystem's values instead of carbon's own",
     section=S)

# --- instance: uWSGI signals, the spooler, mules (vassal.api.signals/spooler/mules) ----------
_add("timer", str, None, "SIGNAL SECONDS: raise a uWSGI signal every SECONDS", repeat=True,
     aliases=("signal-timer",), section=S)
_add("rbtimer", str, None, "SIGNAL SECONDS: raise a uWSGI signal every SECONDS (rb timer)", repeat=True,
     aliases=("signal-rbtimer",), section=S)
_add("touch-signal", str, None, "FILE SIGNAL: raise a uWSGI signal when FILE is touched", repeat=True,
     section=S)
_add("signal-bufsize", int, 0, "socket buffer size of the signal pipes (bytes)", aliases=("signals-bufsize",),
     section=S)
_add("spooler", str, None, "run a spooler on this directory (created if missing)", short="Q", repeat=True,
     section=S)
_add("spooler-processes", int, 1, "spooler processes per spooler directory", section=S)
_add("spooler-frequency", int, 30, "seconds a spooler sleeps between scans of its directory",
     aliases=("spooler-freq",), section=S)
_add("spooler-ordered", bool, False, "run jobs in name order, priority subdirectories first", section=S)
_add("spooler-max-tasks", int, 0, "recycle a spooler process after this many jobs (0: never)", section=S)
_add("spooler-harakiri", int, 0, "kill a spooler process stuck in one job longer than this many seconds",
     section=S)
_add("spooler-chdir", str, None, "chdir here before each spooler job", section=S)
_add("spooler-import", str, None, "import this module (or file) in the spooler processes", repeat=True,
     aliases=("spooler-pyimport", "spooler-py-import", "spooler-python-import"), section=S)
_add("spooler-quiet", bool, False, "do not log each spooler job", section=S)
_add("touch-spoolers-reload", str, None, "restart the spooler processes when this file is touched",
     repeat=True, section=S)
_add("mule", str, None, "add a mule (alone: signal-only; FILE.py or module:callable: its program)",
     repeat=True, implicit="", section=S)
_add("mules", int, 0, "add this many signal-only mules", repeat=True, section=S)
_add("farm", str, None, "NAME:ID[,ID...]: a farm of mules", repeat=True, section=S)
_add("mule-msg-size", int, 0, "socket buffer size of the mule message queues (bytes)", section=S)
_add("touch-mules-reload", str, None, "restart the mules when this file is touched", repeat=True,
     section=S)

# --- master services: hooks, daemons, cron, master FIFO, touch and reload (vassal/services) --
S = "services"
for _phase in ("asap", "pre-jail", "post-jail", "in-jail", "as-root", "as-user", "as-user-atexit", "pre-app",
               "post-app", "post-fork", "accepting", "accepting1", "accepting-once", "accepting1-once",
               "master-start", "emperor-stop", "emperor-reload", "emperor-lost"):
    _add(f"hook-{_phase}", str, None, f"ACTION:ARGS: run a hook in the {_phase} phase", repeat=True, section=S)
for _phase in ("asap", "pre-jail", "post-jail", "in-jail", "as-root", "as-user", "as-user-atexit", "pre-app",
               "post-app"):
    _add(f"exec-{_phase}", str, None, f"run a shell command in the {_phase} phase", repeat=True, section=S)
    _add(f"call-{_phase}", str, None, f"call a function in the {_phase} phase", repeat=True, section=S)
del _phase
_add("hook-touch", str, None, "FILE ACTION:ARGS: run a hook when the file is touched", repeat=True, section=S)
for _name in ("hook-as-vassal", "hook-as-emperor", "hook-emperor-start", "exec-as-vassal", "exec-as-emperor",
              "call-as-vassal", "call-as-vassal1", "call-as-vassal3", "call-as-emperor", "call-as-emperor1",
              "call-as-emperor2", "call-as-emperor4"):
    _add(_name, str, None, "a hook the emperor runs for its vassals (not wired here)", repeat=True,
         section=S, ignored=True)
_add("hook-as-mule", str, None, "ACTION:ARGS: run a hook in each mule as it starts", repeat=True, section=S)
_add("hook-as-gateway", str, None, "a hook of gateways (no gateway processes here)", repeat=True, section=S,
     ignored=True)
del _name
_add("binsh", str, None, "shell for exec hooks, cron, daemons (first executable one; else /bin/sh)",
     repeat=True, section=S)
_add("jailed", bool, False, "run the post-jail hooks (as root)", section=S)
_add("attach-daemon", str, None, "run a command beside the master, respawned when it exits", repeat=True,
     section=S)
_add("attach-control-daemon", str, None, "like attach-daemon; its death stops the instance", repeat=True,
     section=S)
_add("smart-attach-daemon", str, None, "PIDFILE COMMAND: a self-daemonizing command followed by pidfile",
     repeat=True, section=S)
_add("smart-attach-daemon2", str, None, "PIDFILE COMMAND: daemonize the command and write its pidfile",
     repeat=True, section=S)
_add("attach-daemon2", str, None, "key=val,... form of the attach-daemon family (command=...)", repeat=True,
     section=S)
for _name in ("legion-attach-daemon", "legion-smart-attach-daemon", "legion-smart-attach-daemon2",
              "legion-cron", "cron-legion", "unique-legion-cron", "unique-cron-legion"):
    _add(_name, str, None, "refused: legions are not available in Imperium", repeat=True, section=S)
del _name
_add("daemons-honour-stdin", bool, False, "leave the daemons' stdin alone (default: /dev/null)", section=S)
_add("cron", str, None, "MIN HOUR DAY MONTH WEEKDAY COMMAND: run a command at those times (-1: any)",
     repeat=True, section=S)
_add("cron2", str, None, "minute=..,hour=..,day=..,month=..,week=..,unique=..,harakiri=.. COMMAND",
     repeat=True, section=S)
_add("unique-cron", str, None, "like cron, never two runs at once", repeat=True, section=S)
_add("cron-harakiri", int, 0, "kill a cron command still running after this many seconds", section=S)
_add("master-fifo", str, None, "command FIFO of the master (r, R, q, Q, w, W, c, p, s, ...); up to 10 slots",
     repeat=True, section=S)
_add("touch-exec", str, None, "FILE COMMAND: run a command when the file changes", repeat=True, section=S)
_add("fs-reload", str, None, "graceful reload when this file or directory changes (inotify)", repeat=True,
     section=S)
_add("fs-brutal-reload", str, None, "brutal reload when this file or directory changes (inotify)",
     repeat=True, section=S)
_add("reload-on-exception", bool, False, "end the worker when the app raises (the master respawns it)",
     section=S)
_add("reload-on-exception-type", str, None, "end the worker when the app raises this exception type",
     repeat=True, section=S)
_add("reload-on-exception-value", str, None, "end the worker when the app raises with this message",
     repeat=True, section=S)
_add("reload-on-exception-repr", str, None, "end the worker when the app raises 'Type: message'",
     repeat=True, section=S)
_add("harakiri-graceful-timeout", int, 0, "first harakiri sends harakiri-graceful-signal, SIGKILL this "
     "many seconds later", section=S)
_add("harakiri-graceful-signal", int, 15, "signal of the graceful harakiri", section=S)
_add("no-orphans", bool, False, "kill the workers when the master dies (always the case here)", section=S)
_add("max-fd", int, 0, "set the file descriptor limit (soft and hard)", section=S)
_add("never-swap", bool, False, "lock all memory pages (mlockall) in the master and every process it forks", section=S)

# --- python --------------------------------------------------------------------------------
S = "python"
_add("wsgi-file", str, None, "load the WSGI app from this file", aliases=("file",), section=S)
_add("module", str, None, "load the WSGI app from this module (module or module:callable)",
     aliases=("wsgi",), short="w", section=S)
_add("callable", str, "application", "name of the WSGI callable in the module or file", section=S)
_add("pythonpath", str, None, "add a directory (or glob) to sys.path", repeat=True,
     aliases=("python-path", "pp"), section=S)
_add("home", str, None, "use this virtualenv (PYTHONHOME)", aliases=("virtualenv", "venv", "pyhome"),
     short="H", section=S)
_add("pymodule-alias", str, None, "NAME=MODULE: import MODULE under NAME", repeat=True, section=S)
_add("import", str, None, "import this module at startup", repeat=True, aliases=("pyimport", "py-import",
     "python-import"), section=S)
_add("shared-import", str, None, "import this module in the master", repeat=True,
     aliases=("shared-pyimport", "shared-py-import", "shared-python-import"), section=S)
_add("test", str, None, "check that this module imports and exit", short="J", section=S, ignored=True)
_add("optimize", int, 0, "python optimization level", short="O", section=S, ignored=True)
_add("paste", str, None, "load a paste.deploy app (config:/path/app.ini, egg:..., ...)", section=S)
_add("paste-logger", bool, False, "configure logging from the paste ini file (logging.config)", section=S)
_add("ini-paste", str, None, "read this ini file's [uwsgi] section and load it as a paste.deploy app",
     section=S, loader=True)
_add("ini-paste-logged", str, None, "like ini-paste, and configure logging from the file", section=S,
     loader=True)
_add("eval", str, None, "evaluate this python code as the app definition", section=S)
_add("pyargv", str, None, "sys.argv of the app after 'uwsgi' (split on spaces)", section=S)
_add("py-call-osafterfork", bool, False, "let workers trap OS signals in python (always the case here)",
     section=S)
_add("py-call-uwsgi-fork-hooks", bool, False, "run the os.register_at_fork() hooks around every fork "
     "(always the case here)", section=S)
_add("profiler", str, None, "log the app's python calls (pycall) or lines (pyline) in the main thread",
     section=S)

# --- logging -------------------------------------------------------------------------------
S = "logging"
_add("logto", str, None, "log to this file (or to a UDP host:port)", section=S)
_add("logto2", str, None, "log to this file after dropping privileges", section=S)
_add("log-truncate", bool, False, "empty the logto file on start-up", section=S)
_add("log-reopen", bool, False, "reopen the log file on reload (instead of keeping the open one)", section=S)
_add("logfile-chmod", str, None, "permissions of the log file (three octal digits)", section=S)
_add("logfile-chown", bool, False, "give the log file to uid/gid before dropping privileges", section=S)
_add("log-maxsize", int, 0, "rotate the log file past this many bytes (implies log-master)", section=S)
_add("log-backupname", str, None, "name of the rotated log file (default: FILE.<unix time>)", section=S)
_add("touch-logrotate", str, None, "rotate the log file when this file is touched", repeat=True, section=S)
_add("touch-logreopen", str, None, "reopen the log file when this file is touched", repeat=True, section=S)
_add("log-date", str, None, "prefix log lines with a date (strftime format; alone: the default)",
     aliases=("logdate",), implicit="", section=S)
_add("log-prefix", str, None, "as log-date in uWSGI: a strftime text before each line, then ' - '",
     aliases=("logprefix",), implicit="", section=S)
_add("log-master", bool, False, "workers log through a pipe the master reads and writes out", section=S)
_add("log-master-bufsize", int, 8192, "longest log message the master keeps (longer ones are cut)", section=S)
_add("log-master-stream", bool, False, "the master's log pipe is a stream (lines are reassembled)", section=S)
_add("log-master-req-stream", bool, False, "the request log pipe is a stream", section=S)
_add("threaded-logger", bool, False, "uWSGI writes logs from a thread; here the master's loop does (log-master)",
     section=S)
_add("logger", str, None, "[ID ]PLUGIN[:ARGS]: write logs there (file, fd, stdio, socket, syslog)", repeat=True,
     section=S)
_add("req-logger", str, None, "[ID ]PLUGIN[:ARGS]: write request lines there", repeat=True, aliases=("logger-req",),
     section=S)
_add("log-syslog", str, None, "IDENT[,FACILITY]: log to syslog (a logger)", implicit="uwsgi", repeat=True, section=S)
_add("log-socket", str, None, "ADDR[,PREFIX]: send log lines as datagrams (a logger)", repeat=True, section=S)
_add("logger-list", bool, False, "list the built-in loggers", aliases=("loggers-list",), section=S)
_add("log-drain", str, None, "REGEXP: drop log lines that match", repeat=True, section=S)
_add("log-filter", str, None, "REGEXP: keep only log lines that match", repeat=True, section=S)
_add("log-route", str, None, "ID REGEXP: send matching lines to the logger with this id", repeat=True, section=S)
_add("log-req-route", str, None, "ID REGEXP: send matching request lines to that req-logger", repeat=True,
     section=S)
_add("log-encoder", str, None, "NAME[:ID] [ARGS]: transform log lines (prefix suffix nl gzip compress format json)",
     repeat=True, section=S)
_add("log-req-encoder", str, None, "NAME[:ID] [ARGS]: transform request log lines", repeat=True, section=S)
_add("log-format", str, None, "format of request log lines (%(method) %(uri) %(status) ...)",
     aliases=("logformat",), section=S)
_add("logformat-strftime", bool, False, "%(ftime) uses the log-date format", aliases=("log-format-strftime",),
     section=S)
_add("disable-logging", bool, False, "do not log requests", short="L", section=S)
_add("log-4xx", bool, False, "log requests with 4xx status even when logging is disabled", section=S)
_add("log-5xx", bool, False, "log requests with 5xx status even when logging is disabled", section=S)
_add("log-slow", int, 0, "log requests at least this many milliseconds long even when logging is disabled",
     section=S)
_add("log-big", int, 0, "log responses of at least this many bytes even when logging is disabled", section=S)
_add("log-zero", bool, False, "log responses without body even when logging is disabled", section=S)
_add("log-sendfile", bool, False, "log responses sent with sendfile even when logging is disabled", section=S)
_add("log-ioerror", bool, False, "log requests with read and write errors even when logging is disabled",
     section=S)
_add("log-micros", bool, False, "request times in microseconds in the request log", section=S)
_add("log-x-forwarded-for", bool, False, "log the X-Forwarded-For header as the client address", section=S)

# --- emperor -------------------------------------------------------------------------------
S = "emperor"
_add("emperor", str, None, "run the emperor on this directory, glob or monitor URI", repeat=True, section=S)
_add("emperor-freq", int, 3, "seconds between full rescans of the monitors", section=S)
_add("emperor-throttle", int, 1000, "base respawn throttle, milliseconds (doubles up to the max)", section=S)
_add("emperor-max-throttle", int, 180000, "largest respawn throttle, milliseconds", section=S)
_add("emperor-required-heartbeat", int, 30, "seconds without heartbeat before a vassal is cursed",
     section=S)
_add("emperor-curse-tolerance", int, 30, "seconds between SIGKILLs of a vassal that will not die",
     section=S)
_add("emperor-pidfile", str, None, "write the emperor pid here", section=S)
_add("emperor-tyrant", bool, False, "run each vassal as the owner of its config file", section=S)
_add("emperor-tyrant-nofollow", bool, False, "tyrant mode using the symlink's owner, not its target's",
     section=S)
_add("emperor-tyrant-initgroups", bool, False, "tyrant vassals also get their owner's supplementary "
     "groups (initgroups)", section=S)
_add("emperor-nofollow", bool, False, "use the mtime of symlinks, not of their targets", section=S)
_add("emperor-stats", str, None, "serve the emperor stats JSON on this address",
     aliases=("emperor-stats-server",), section=S)
_add("emperor-broodlord", int, 0, "allow this many zerg vassals in broodlord mode (0: off)", section=S)
_add("emperor-magic-exec", bool, False, "run executable configs as exec://NAME", section=S)
_add("emperor-extra-extension", str, None, "also accept configs with this extension (loaded with --config)",
     repeat=True, aliases=("emperor-extra-ext",), section=S)
_add("emperor-no-blacklist", bool, False, "never blacklist a failing vassal", section=S)
_add("emperor-graceful-shutdown", bool, False, "stop vassals gracefully (byte 2, SIGHUP-like)", section=S)
_add("emperor-wrapper", str, None, "start vassals with this binary instead of our own", section=S)
_add("emperor-wrapper-override", str, None, "binary to try before the default one", repeat=True,
     section=S)
_add("emperor-wrapper-fallback", str, None, "binary to try after the default one", repeat=True, section=S)
_add("emperor-procname", str, None, "name of the emperor process", section=S)
_add("emperor-spawn", str, "fork", "fork: our own vassals are forked from the fork server; "
     "exec: every vassal is exec'd", section=S)
_add("emperor-use-clone", str, None, "namespaces for every vassal: comma list of fs (mount, mnt, ns), "
     "net, ipc, pid, uts, user", section=S)
_add("emperor-on-demand-extension", str, None, "socket-activation: read the socket from FILE.EXT",
     aliases=("emperor-on-demand-ext",), section=S)
_add("emperor-on-demand-directory", str, None, "socket-activation: UNIX sockets in this directory",
     aliases=("emperor-on-demand-dir",), section=S)
_add("emperor-on-demand-exec", str, None, "socket-activation: run this to learn the socket", section=S)
_add("emperor-proxy-socket", str, None, "talk to the emperor through this proxy socket", section=S,
     ignored=True)
_add("emperor-cap", str, None, "capabilities vassals keep (comma list of names or numbers); "
     "every other one leaves their bounding set", aliases=("vassals-cap", "vassal-cap"), section=S)
_add("vassals-cgroup-opt", str, None, "KEY=VALUE: every vassal gets its own cgroup with this setting "
     "(memory.max, cpu.max, pids.max... in v1 or v2 words), removed when it exits (Imperium's)",
     repeat=True, section=S)
_add("emperor-fleet-member", str, None, "this emperor's member name in zoo:// fleets (default: host name)",
     section=S)
_add("emperor-fleet-labels", str, None, "labels of this fleet member: KEY=VALUE[,KEY...] (zoo://)",
     repeat=True, section=S)
_add("fleet-status", str, None, "print where each vassal of a zoo:// fleet runs, and exit", section=S)
_add("early-emperor", bool, False, "start the emperor as early as possible (an Imperium emperor "
     "always starts before anything else)", section=S, ignored=True)
_add("binary-path", str, None, "binary used to start vassals", section=S)
_add("vassal-set", str, None, "KEY=VALUE: pass --set KEY=VALUE to every vassal", repeat=True,
     aliases=("vassals-set",), section=S)
_add("vassals-include", str, None, "pass --include FILE to every vassal (after its config)", repeat=True,
     section=S)
_add("vassals-inherit", str, None, "pass --inherit FILE to every vassal (after its config)", repeat=True,
     section=S)
_add("vassals-include-before", str, None, "pass --include FILE to every vassal (before its config)",
     repeat=True, section=S)
_add("vassals-inherit-before", str, None, "pass --inherit FILE to every vassal (before its config)",
     repeat=True, section=S)
_add("vassals-start-hook", str, None, "run COMMAND VASSALNAME before a vassal starts", section=S)
_add("vassals-stop-hook", str, None, "run COMMAND VASSALNAME after a vassal is removed", section=S)
_add("emperor-prometheus", str, None, "serve the emperor's Prometheus metrics on HTTP ADDR (/metrics)",
     section=S)
_add("emperor-control-socket", str, None, "accept imperium ctl commands on this UNIX socket (mode 0600)",
     section=S)
_add("emperor-log-prefix", bool, False, "collect the vassals' output and prefix each line with [NAME]",
     section=S)
_add("emperor-vassal-logdir", str, None, "collect each vassal's output into DIR/NAME.log (reopened on "
     "SIGUSR2)", section=S)
_add("imperial-monitor-list", bool, False, "list the imperial monitors (and go on, as uWSGI)",
     aliases=("imperial-monitors-list",), section=S)

del S

# --- refused with a reason: uWSGI options whose absence would break a deploy silently ------------
_ROUTER = ("uWSGI's {plugin} (a proxy process in front of the workers, with its subscription server) is "
           "not built here: put nginx (uwsgi_pass/proxy_pass) or HAProxy in front of the instances, "
           "each on its own socket (an emperor's vassals each bind theirs)")
_SUBSCRIBE = ("subscribing to a uWSGI router is not built here: point the front server (nginx's "
              "uwsgi_pass) at the instance's socket instead")
#: option -> why it is refused (the loader says so, naming file and line)
REFUSED: dict[str, str] = {}
#: uWSGI plugin -> why every option it defines is refused
REFUSED_PLUGINS: dict[str, str] = {p: _ROUTER.format(plugin=p) for p in (
    "fastrouter", "rawrouter", "sslrouter", "forkptyrouter", "corerouter")}


def _refuse(why: str, *names: str) -> None:
    for name in names:
        if name in ALIASES:
            raise ValueError(f"option {name} both defined and refused")
        REFUSED[name] = why


_refuse(_SUBSCRIBE, "subscribe-to", "subscribe2", "st", "subscribe", "unsubscribe-on-graceful-reload",
        "start-unsubscribed", "subscription-algo", "subscribe-freq", "subscription-tolerance",
        "http-subscription-server", "http-subscription-fallback-key", "http-resubscribe")
_refuse("uWSGI's HTTP router is not built here (the instance serves HTTP itself with http-socket): let "
        "the front server terminate TLS and proxy", "https", "https2", "http-to", "http-to-https")

#: options accepted only for compatibility
IGNORED: frozenset[str] = frozenset(n for n, o in OPTIONS.items() if o.ignored)
#: options whose effect Imperium always has, so no code needs to read them: xml's <app>
#: marker (its mount is read), plugins are built in, app threads always run, one interpreter per process, sockets are close-on-exec,
#: HTTP/1.1 keep-alive is on, workers die with the master
#: (no-orphans) and python's signal state is reset after every fork (py-call-osafterfork)
INHERENT: frozenset[str] = frozenset({
    "app", "plugin", "plugins-dir", "enable-threads", "single-interpreter", "close-on-exec", "close-on-exec2",
    "http-keepalive", "no-orphans", "py-call-osafterfork",
    # workers are forked by os.fork(), which runs the os.register_at_fork() hooks
    "py-call-uwsgi-fork-hooks",
    # TCP_NODELAY is set on every TCP socket; EPOLLEXCLUSIVE wakes one waiter per connection
    "tcp-nodelay", "thunder-lock",
})


def lookup(spelling: str) -> Option | None:
    """The option for a name or alias (dashes or underscores), or None."""
    name = ALIASES.get(spelling) or ALIASES.get(spelling.replace("_", "-"))
    return OPTIONS[name] if name else None


_SECTION_TITLES = {"config": "Configuration", "instance": "Instance",
                   "services": "Master services (hooks, daemons, cron, master FIFO, reloads)",
                   "python": "Python apps",
                   "logging": "Logging", "emperor": "Emperor"}


def format_help() -> str:
    """The ``--help`` text, generated from the table."""
    lines = [f"Imperium {VERSION}: a uWSGI-compatible Emperor and app server",
             "Usage: imperium [options...] [config file]", ""]
    for section, title in _SECTION_TITLES.items():
        lines.append(f"{title}:")
        for opt in OPTIONS.values():
            if opt.section != section or opt.ignored:
                continue
            flags = f"-{opt.short}|--{opt.name}" if opt.short else f"    --{opt.name}"
            if opt.aliases:
                flags += " (" + ", ".join(opt.aliases) + ")"
            extra = []
            if opt.repeat:
                extra.append("repeatable")
            if opt.default not in (None, False, 0):
                extra.append(f"default {opt.default}")
            tail = f" [{'; '.join(extra)}]" if extra else ""
            lines.append(f"    {flags:<50} {opt.help}{tail}")
        lines.append("")
    ignored = sorted(IGNORED)
    lines.append("Accepted for uWSGI compatibility, without effect: " + " ".join(ignored))
    return "\n".join(lines)
