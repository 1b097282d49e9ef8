"""An app written with uwsgidecorators, for the twin tests: real uWSGI runs it with Debian's
module, Imperium with its own. Events go to $EVENTS as in background.py.

With "more" in $FEATURES it also uses @rbtimer, @cron, @filemon (on $EVENTS.watched, made by
the test), @spoolraw, @spoolforever, @thread, @rpc, @mulemsg (mule 1), @muleloop (mule 2) and
@farm (farm "pool": mule 3), which need those mules."""

import os
import threading

import uwsgi

from uwsgidecorators import harakiri, lock, mulefunc, postfork, signal, spool, timer

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


if "more" in FEATURES:
    from uwsgidecorators import (
        cron,
        farm,
        filemon,
        muleloop,
        mulemsg,
        rbtimer,
        rpc,
        spoolforever,
        spoolraw,
        thread,
    )

    WATCHED = EVENTS + ".watched"

    @rbtimer(1)
    def rb(num):
        event("rbtimer", who())

    @cron(-1, -1, -1, -1, -1)
    def every_minute(num):
        event("cron", who())

    @filemon(WATCHED)
    def changed(num):
        event("filemon", who())

    @spoolraw
    def raw(args):
        event("spoolraw", who(), args["n"])
        return uwsgi.SPOOL_OK

    @spoolforever
    def forever(args):
        event("spoolforever", who(), args["n"])

    @thread
    def in_thread(text):
        event("thread", who(), text, threading.current_thread() is not threading.main_thread())

    @rpc("shout")
    def shout(arg):
        return arg.upper()

    @mulemsg(1)
    def on_message(msg):
        event("mulemsg", who(), msg.decode())

    @muleloop(2)
    def loop():
        msg = uwsgi.mule_get_msg()
        event("muleloop", who(), msg.decode())

    @farm("pool")
    def on_farm(msg):
        event("farm", who(), msg.decode())


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
    elif path == "/spoolraw":
        raw.spool(n="1")
    elif path == "/spoolforever":
        forever.spool(n="2")
    elif path == "/thread":
        in_thread("t")
    elif path == "/rpc":
        out = repr(uwsgi.rpc(None, b"shout", b"hey"))
    elif path == "/mulemsg":
        uwsgi.mule_msg(b"to-one", 1)
    elif path == "/muleloop":
        uwsgi.mule_msg(b"to-two", 2)
    elif path == "/farm":
        uwsgi.farm_msg("pool", b"to-farm")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [out.encode()]
