"""Signals, the spooler and mules for the tests, the same under real uWSGI and Imperium.

Every event is a line appended to the file named by $EVENTS: ``WHAT WHO DETAIL...`` where WHO
is ``w<worker id>``, ``m<mule id>``, ``spooler`` or ``master``. $FEATURES (comma separated)
says what to set up at load time: ``timer`` (signal 20 every second to any worker), ``cron``
(signal 21 every minute, to any worker), ``workers`` (signal 10 to every worker), ``mule``
(signal 13 to mule 1, and a message hook), ``spooler`` (the spooler function), ``target``
(signal 11 to worker 2).

GET /signal/N raises signal N; /spool?k=v&k2=v2 spools {k: v, ...} (bytes); /mule/N?text
sends text to mule N (0: any mule); /farm/NAME?text to a farm; /info says who answered; /eval?EXPR evaluates a Python
expression (``uwsgi`` and ``os`` in scope) and answers its repr, or the exception raised.
"""

import json
import os
import time
from urllib.parse import parse_qsl, unquote

import uwsgi

EVENTS = os.environ["EVENTS"]
FEATURES = set(filter(None, os.environ.get("FEATURES", "").split(",")))


def who():
    if uwsgi.worker_id():
        return f"w{uwsgi.worker_id()}"
    if uwsgi.mule_id():
        return f"m{uwsgi.mule_id()}"
    if uwsgi.i_am_the_spooler():
        return "spooler"
    return "master"


def event(*parts):
    with open(EVENTS, "a") as f:
        f.write(" ".join(str(p) for p in parts) + "\n")


def on_signal(sig):
    event("signal", who(), sig)


if "timer" in FEATURES:
    uwsgi.register_signal(20, "worker", on_signal)
    uwsgi.add_timer(20, 1)
if "cron" in FEATURES:
    uwsgi.register_signal(21, "", on_signal)
    uwsgi.add_cron(21, -1, -1, -1, -1, -1)
if "workers" in FEATURES:
    uwsgi.register_signal(10, "workers", on_signal)
if "target" in FEATURES:
    uwsgi.register_signal(11, "worker2", on_signal)
if "mule" in FEATURES:
    uwsgi.register_signal(13, "mule1", on_signal)

    def on_message(msg):
        event("message", who(), msg.decode())
        if msg == b"crash":
            os._exit(3)

    uwsgi.mule_msg_hook = on_message

if "spooler" in FEATURES:

    def spooler(job):
        doc = {}
        for k, v in job.items():
            key = k.decode() if isinstance(k, bytes) else k
            doc[key] = v.decode("latin-1") if isinstance(v, bytes) else v
        event("job", who(), json.dumps(doc, sort_keys=True))
        if doc.get("crash"):
            os._exit(7)
        if doc.get("sleep"):
            time.sleep(float(doc["sleep"]))
        if doc.get("cwd"):
            event("cwd", who(), os.getcwd())
        ret = doc.get("ret", "ok")
        return {"ok": uwsgi.SPOOL_OK, "retry": uwsgi.SPOOL_RETRY, "ignore": uwsgi.SPOOL_IGNORE}.get(ret, None)

    uwsgi.spooler = spooler


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    query = environ.get("QUERY_STRING", "")
    status, out = "200 OK", ""
    try:
        if path.startswith("/signal/"):
            uwsgi.signal(int(path[8:]))
            out = "sent"
        elif path == "/spool":
            job = {k.encode(): v.encode() for k, v in parse_qsl(query, keep_blank_values=True)}
            out = uwsgi.spool(job).decode()
        elif path.startswith("/mule/"):
            out = repr(uwsgi.mule_msg(query.encode(), int(path[6:])))
        elif path.startswith("/farm/"):
            out = repr(uwsgi.mule_msg(query.encode(), path[6:].encode()))
        elif path == "/eval":
            out = repr(eval(unquote(query), {"uwsgi": uwsgi, "os": os}))
        elif path == "/info":
            out = json.dumps({"who": who(), "pid": os.getpid()})
        else:
            status, out = "404 Not Found", "no such thing"
    except Exception as exc:  # the tests read the error the server raised
        status, out = "500 Internal Server Error", f"{type(exc).__name__}: {exc}"
    start_response(status, [("Content-Type", "text/plain")])
    return [out.encode()]
