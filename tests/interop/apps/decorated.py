"""An app written with uwsgidecorators, for the twin tests: real uWSGI runs it with Debian's
module, Imperium with its own. Events go to $EVENTS as in background.py."""

import os

import uwsgi

from uwsgidecorators import harakiri, lock, mulefunc, postfork, signal, spool, timer

EVENTS = os.environ["EVENTS"]


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


@postfork
def forked():
    event("postfork", who())


@timer(1)
def tick(num):
    event("timer", who(), num)


@spool
def job(args):
    event("spool", who(), args["x"], sorted(args))


@spool(pass_arguments=True)
def job2(a, b=0):
    event("spool2", who(), a, b)


@mulefunc
def in_mule(text):
    event("mulefunc", who(), text)


@signal(40, target="workers")
def sig40(num):
    event("sig40", who(), num)


@lock
def locked():
    return "locked"


@harakiri(30)
def guarded():
    return "guarded"


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    out = "ok"
    if path == "/spool":
        job.spool(x="1")
    elif path == "/spool2":
        job2(5, b=6)
    elif path == "/mule":
        in_mule("hi")
    elif path == "/signal":
        uwsgi.signal(40)
    elif path == "/lock":
        out = locked()
    elif path == "/harakiri":
        out = guarded()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [out.encode()]
