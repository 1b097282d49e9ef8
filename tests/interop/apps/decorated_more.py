"""More of uwsgidecorators for the twin tests (the rest of decorated.py): @rbtimer, @cron,
@filemon, @spoolraw, @spoolforever, @thread, @rpc, @mulemsg (mule 1), @muleloop (mule 2) and
@farm (farm "pool": mule 3). Events go to $EVENTS as in decorated.py; the file
@filemon watches is $EVENTS.watched."""

import os
import threading

import uwsgi

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

EVENTS = os.environ["EVENTS"]
WATCHED = EVENTS + ".watched"  # created by the test before the start


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
    if path == "/spoolraw":
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
