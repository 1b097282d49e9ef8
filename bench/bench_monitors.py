"""How fast do the network imperial monitors notice a change? (`make bench`, not a test)

Two figures per source, p50/p95 over N samples:

1. monitor: source change (row insert, message publish) → the monitor's Touch event, with
   the monitor running in-process against the real service (mongodb: mongomock, or the
   server at MONGODB_URL).
2. spawn: source change → the vassal process started, through a whole emperor: ours
   (``imperium --emperor ...``) and Debian's real uWSGI (``uwsgi-core --plugin emperor_pg``,
   and its amqp/zeromq plugins where they work), both in the same run. The vassal binary is
   a two-line shell script (``--emperor-wrapper``) that reports its name down a FIFO the
   moment it is exec'd, so no vassal start-up cost is counted.

Polling monitors are sampled at random phases of their period (emperor-freq 1 s), so their
figures show the period, which is the point of LISTEN/NOTIFY.

zoo:// adds a third figure, failover: two emperors of a fleet share a ``replicas = 1``
vassal that is a real Imperium instance answering HTTP; the process group of the emperor
running it is SIGKILLed (a machine dying), and we time until the vassal answers again,
started by the survivor. The configured session timeout is printed beside it: the failover
is that timeout (ZooKeeper expires sessions on its tick, 2 s here, so up to one tick more)
plus a spawn.

    .venv/bin/python bench/bench_monitors.py [--samples 30] [--only pg-notify,zoo] [--no-spawn]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emperor.events import MonitorContext, Sync, Touch  # noqa: E402

PG_CONNINFO = "host=127.0.0.1 port=5432 user=postgres dbname=test"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
ZOO_HOSTS = "127.0.0.1:2181"
#: the shortest session ZooKeeper grants with Debian's tickTime of 2000 ms (2 ticks)
ZOO_SESSION_TIMEOUT = 4
FREQ = 1.0
UWSGI = "/usr/bin/uwsgi-core"
IMPERIUM = str(Path(sys.executable).parent / "imperium")


@dataclass
class Result:
    case: str
    path: str  # "monitor" or "spawn: imperium" / "spawn: uWSGI 2.0"
    samples: list[float] = field(default_factory=list)
    note: str = ""

    def row(self) -> str:
        if not self.samples:
            return f"| {self.case} | {self.path} | – | – | – | 0 | {self.note} |"
        ms = sorted(s * 1000 for s in self.samples)
        p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
        return (f"| {self.case} | {self.path} | {statistics.median(ms):.1f} | {p95:.1f} | "
                f"{max(ms):.1f} | {len(ms)} | {self.note} |")


# --- sources: how to make a change, per monitor -------------------------------------------------

class PgSource:
    def __init__(self) -> None:
        import psycopg

        self.table = f"bench_vassals_{uuid.uuid4().hex[:8]}"
        self.channel = f"{self.table}_changed"
        self.conn = psycopg.connect(PG_CONNINFO, autocommit=True)
        self.conn.execute(f"CREATE TABLE {self.table} (name text PRIMARY KEY, config text, "
                          "ts timestamptz NOT NULL DEFAULT now())")
        self.conn.execute(f"""
            CREATE FUNCTION {self.table}_notify() RETURNS trigger AS $$
            BEGIN PERFORM pg_notify('{self.channel}', ''); RETURN NULL; END $$ LANGUAGE plpgsql;
            CREATE TRIGGER {self.table}_t AFTER INSERT OR UPDATE OR DELETE ON {self.table}
            FOR EACH STATEMENT EXECUTE FUNCTION {self.table}_notify();""")

    def arg(self, notify: bool) -> str:
        extra = f" imperium_notify={self.channel}" if notify else ""
        return f"pg://{PG_CONNINFO}{extra};SELECT name,config,EXTRACT(epoch FROM ts) FROM {self.table}"

    def add(self, name: str) -> None:
        self.conn.execute(f"INSERT INTO {self.table} (name, config) VALUES (%s, %s)",
                          [name, "[uwsgi]\n"])

    def close(self) -> None:
        self.conn.execute(f"DROP TABLE IF EXISTS {self.table}")
        self.conn.execute(f"DROP FUNCTION IF EXISTS {self.table}_notify()")
        self.conn.close()


class AmqpSource:
    def __init__(self) -> None:
        import pika

        self.conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        self.channel = self.conn.channel()
        self.channel.exchange_declare(exchange="uwsgi.emperor", exchange_type="fanout")

    def arg(self) -> str:
        return AMQP_URL

    def add(self, name: str) -> None:
        self.channel.basic_publish(exchange="uwsgi.emperor", routing_key=name, body=b"[uwsgi]\n")

    def close(self) -> None:
        self.conn.close()


class ZmqSource:
    def __init__(self) -> None:
        import zmq

        from tests.conftest import free_port

        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.PUSH)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(self.endpoint)

    def arg(self) -> str:
        return f"zmq://{self.endpoint}"

    def add(self, name: str) -> None:
        self.sock.send_multipart([b"touch", name.encode(), b"[uwsgi]\n"])

    def close(self) -> None:
        self.sock.close()
        self.ctx.term()


class ZooSource:
    """A private tree on the local ZooKeeper; a change is a znode created."""

    def __init__(self) -> None:
        from kazoo.client import KazooClient

        self.base = f"/imperium-bench/{uuid.uuid4().hex[:8]}"
        self.path = f"{self.base}/vassals"
        self.client = KazooClient(ZOO_HOSTS, timeout=10)
        self.client.start(timeout=10)
        self.client.ensure_path(self.path)

    def arg(self) -> str:
        return f"zoo://{ZOO_HOSTS}{self.path}?timeout={ZOO_SESSION_TIMEOUT}"

    def add(self, name: str, config: bytes = b"[uwsgi]\n") -> None:
        self.client.create(f"{self.path}/{name}", config)

    def close(self) -> None:
        with suppress(Exception):
            self.client.delete(self.base, recursive=True)
        self.client.stop()
        self.client.close()


class MongoSource:
    """The server at MONGODB_URL, or mongomock (in-process figures only)."""

    def __init__(self) -> None:
        import pymongo

        self.url = os.environ.get("MONGODB_URL", "")
        self.patch = None
        if not self.url:
            import mongomock

            self.patch = mongomock.patch(servers=(("bench.mongo", 27017),))
            self.patch.start()
            self.address = "bench.mongo:27017"
            client_url = "mongodb://bench.mongo:27017"
        else:
            from urllib.parse import urlsplit

            parts = urlsplit(self.url)
            self.address = parts.netloc + (f"/?{parts.query}" if parts.query else "")
            client_url = self.url
        self.client = pymongo.MongoClient(client_url)
        self.coll_name = f"bench_{uuid.uuid4().hex[:8]}"
        self.coll = self.client["imperium_bench"][self.coll_name]

    @property
    def real(self) -> bool:
        return self.patch is None

    def arg(self) -> str:
        return f"mongodb://{self.address},imperium_bench.{self.coll_name}"

    def add(self, name: str) -> None:
        import datetime as dt

        self.coll.insert_one({"name": name, "config": "[uwsgi]\n", "ts": dt.datetime.now(dt.UTC)})

    def close(self) -> None:
        self.coll.drop()
        self.client.close()
        if self.patch is not None:
            self.patch.stop()


# --- figure 1: the monitor alone ----------------------------------------------------------------

def bench_monitor(case: str, cls: type, arg: str, add: Callable[[str], None], samples: int,
                  polling: bool) -> Result:
    from tests.integration.monitor_harness import start_monitor

    result = Result(case, "monitor")
    run = start_monitor(cls, arg, MonitorContext(freq=FREQ))
    seen: dict[str, float] = {}
    try:
        ready = getattr(run.monitor, "consuming", None) or getattr(run.monitor, "bound", None)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if (ready is not None and ready.is_set()) or run.all(Sync):
                break
            time.sleep(0.01)
        # one change first, not counted: connections (a PUSH socket's, say) settle on first use
        warm = f"warmup-{uuid.uuid4().hex[:6]}.ini"
        add(warm)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(
                isinstance(e, Touch) and e.name == warm for e in run.all(Touch)):
            time.sleep(0.005)
        for i in range(samples):
            name = f"m{i}-{uuid.uuid4().hex[:6]}.ini"
            if polling:
                time.sleep(random.uniform(0, FREQ))
            else:
                time.sleep(0.02)
            mark = run.mark()
            t0 = time.monotonic()
            add(name)
            deadline = t0 + 10
            while time.monotonic() < deadline and name not in seen:
                with run.lock:
                    for t, e in run.events[mark:]:
                        if isinstance(e, Touch) and e.name == name:
                            seen[name] = t
                time.sleep(0.0005)
            if name in seen:
                result.samples.append(seen[name] - t0)
            else:
                result.note = "some samples timed out"
    finally:
        run.stop()
    return result


# --- figure 2: a whole emperor, ours or uWSGI's -------------------------------------------------

class SpawnWatch:
    """A FIFO the fake vassal writes its name to when exec'd; arrival times by name."""

    def __init__(self, workdir: Path) -> None:
        self.fifo = workdir / "spawned.fifo"
        os.mkfifo(self.fifo)
        self.wrapper = workdir / "fake-vassal.sh"
        # argv: wrapper --ini emperor://NAME ; report "NAME PID" then idle as the vassal
        self.wrapper.write_text(f"#!/bin/sh\necho \"$2 $$\" > {self.fifo}\nexec sleep 600\n")
        self.wrapper.chmod(0o755)
        self.times: dict[str, float] = {}
        self.pids: list[int] = []
        self.cond = threading.Condition()
        self.fd = os.open(self.fifo, os.O_RDWR)  # RDWR: never EOF when writers come and go
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:
                return
            now = time.monotonic()
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                arg, _, pid = line.decode().rpartition(" ")
                name = arg.split("://", 1)[-1]
                with self.cond:
                    self.times.setdefault(name, now)
                    if pid.isdigit():
                        self.pids.append(int(pid))
                    self.cond.notify_all()

    def wait(self, name: str, timeout: float) -> float | None:
        with self.cond:
            self.cond.wait_for(lambda: name in self.times, timeout)
            return self.times.get(name)

    def close(self) -> None:
        for pid in self.pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        os.close(self.fd)


@contextmanager
def emperor(argv: list[str], log: Path) -> Iterator[subprocess.Popen]:
    env = dict(os.environ)
    env.pop("UWSGI_EMPEROR_FD", None)
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    try:
        yield proc
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def bench_spawn(case: str, who: str, argv: list[str], add: Callable[[str], None], samples: int,
                polling: bool, workdir: Path) -> Result:
    result = Result(case, f"spawn: {who}")
    watch = SpawnWatch(workdir)
    log = workdir / f"{who.split()[0]}-{case}.log"
    argv = [*argv, "--emperor-wrapper", str(watch.wrapper), "--emperor-freq", str(int(FREQ))]
    try:
        with emperor(argv, log) as proc:
            warm = f"warmup-{uuid.uuid4().hex[:6]}.ini"
            deadline = time.monotonic() + 20
            # a push source may not be subscribed yet: repeat the warm-up change until it lands
            while time.monotonic() < deadline and warm not in watch.times and proc.poll() is None:
                with suppress(Exception):
                    add(warm)
                watch.wait(warm, 1.5)
            if warm not in watch.times:
                tail = log.read_text(errors="replace")[-100:].strip().replace("\n", " / ")
                result.note = f"no vassal spawned ({'exited' if proc.poll() is not None else 'timeout'}): {tail}"
                return result
            for i in range(samples):
                name = f"s{i}-{uuid.uuid4().hex[:6]}.ini"
                time.sleep(random.uniform(0, FREQ) if polling else 0.05)
                t0 = time.monotonic()
                add(name)
                t1 = watch.wait(name, 10)
                if t1 is None:
                    result.note = "some samples timed out"
                else:
                    result.samples.append(t1 - t0)
    finally:
        watch.close()
        with suppress(OSError):
            watch.fifo.unlink()
    return result


# --- figure 3: zoo:// failover -------------------------------------------------------------------

HELLO = "def application(environ, start_response):\n" \
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'ok']\n"


def _answers(port: int) -> bool:
    import http.client

    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
        conn.request("GET", "/")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def bench_failover(samples: int, workdir: Path) -> Result:
    """SIGKILL of the emperor (its whole process group) running a replicas=1 vassal → the
    vassal answering HTTP again, started by the other member of the fleet."""
    from monitors import fleet
    from tests.conftest import free_port

    result = Result("zoo failover", f"answering (session timeout {ZOO_SESSION_TIMEOUT}s)")
    app = workdir / "hello.py"
    app.write_text(HELLO)
    for i in range(samples):
        src = ZooSource()
        port = free_port()
        name = f"fo{i}-{uuid.uuid4().hex[:6]}.ini"
        src.add(name, f"[uwsgi]\nhttp-socket = 127.0.0.1:{port}\nwsgi-file = {app}\n"
                      f"[fleet]\nreplicas = 1\n".encode())
        owner = fleet.place(name, fleet.FleetSpec(1), {"a": {}, "b": {}})[0]
        logs = {m: workdir / f"failover-{i}-{m}.log" for m in "ab"}
        with emperor([IMPERIUM, "--emperor", src.arg(), "--emperor-fleet-member", "a",
                      "--emperor-freq", str(int(FREQ))], logs["a"]) as a, \
             emperor([IMPERIUM, "--emperor", src.arg(), "--emperor-fleet-member", "b",
                      "--emperor-freq", str(int(FREQ))], logs["b"]) as b:
            procs = {"a": a, "b": b}
            deadline = time.monotonic() + 30

            def members(src: ZooSource = src) -> list[str]:
                return sorted(src.client.get_children(src.path + ".members"))

            # both members registered, not only the owner answering: a member still starting
            # when the owner dies is not a failover to measure
            while time.monotonic() < deadline and not (_answers(port) and members() == ["a", "b"]):
                time.sleep(0.02)
            if not _answers(port) or members() != ["a", "b"]:
                result.note = f"sample {i}: the vassal never answered ({members()})"
                src.close()
                continue
            from bench.common import descendants

            # the machine dies: the emperor and everything it started (vassals have their own
            # process groups), all at once
            doomed = [procs[owner].pid, *descendants(procs[owner].pid)]
            t0 = time.monotonic()
            for pid in doomed:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            deadline = t0 + ZOO_SESSION_TIMEOUT + 30
            while time.monotonic() < deadline and not _answers(port):
                time.sleep(0.01)
            if _answers(port):
                result.samples.append(time.monotonic() - t0)
            else:
                result.note = f"sample {i}: no answer {time.monotonic() - t0:.0f}s after the kill"
        src.close()
    return result


def imperium_works() -> bool:
    try:
        import emperor.core  # noqa: F401
    except ImportError:
        return False
    return Path(IMPERIUM).exists()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=30, help="samples per push case (polling: half)")
    ap.add_argument("--only", default="",
                    help="comma-separated cases: pg-notify,pg-poll,amqp,zmq,mongodb,zoo,zoo-failover")
    ap.add_argument("--failovers", type=int, default=5, help="zoo failover samples (each takes "
                    "a session timeout)")
    ap.add_argument("--no-spawn", action="store_true", help="monitor figures only")
    opts = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.ERROR)  # the monitors' outage chatter is not the figure
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.ERROR)
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    only = set(filter(None, opts.only.split(",")))
    workdir = Path(tempfile.mkdtemp(prefix="bench-monitors-"))
    results: list[Result] = []
    push_n, poll_n = opts.samples, max(5, opts.samples // 2)
    have_imperium = imperium_works()

    def want(case: str) -> bool:
        return not only or case in only

    from monitors.amqp import AmqpMonitor
    from monitors.mongodb import MongoMonitor
    from monitors.pg import PgMonitor
    from monitors.zmq import ZmqMonitor
    from monitors.zoo import ZooMonitor

    try:
        if want("pg-notify") or want("pg-poll"):
            src = PgSource()
            try:
                for notify, case in ((True, "pg-notify"), (False, "pg-poll")):
                    if not want(case):
                        continue
                    n = push_n if notify else poll_n
                    results.append(bench_monitor(case, PgMonitor, src.arg(notify), src.add, n, not notify))
                    if opts.no_spawn:
                        continue
                    if have_imperium:
                        results.append(bench_spawn(case, "imperium", [IMPERIUM, "--emperor", src.arg(notify)],
                                                   src.add, n, not notify, workdir))
                    if not notify and Path(UWSGI).exists():
                        results.append(bench_spawn(case, "uWSGI 2.0", [UWSGI, "--plugin", "emperor_pg",
                                                   "--emperor", src.arg(False)], src.add, n, True, workdir))
            finally:
                src.close()
        if want("amqp"):
            src = AmqpSource()
            try:
                results.append(bench_monitor("amqp", AmqpMonitor, src.arg(), src.add, push_n, False))
                if not opts.no_spawn:
                    if have_imperium:
                        results.append(bench_spawn("amqp", "imperium", [IMPERIUM, "--emperor", src.arg()],
                                                   src.add, push_n, False, workdir))
                    if Path(UWSGI).exists():
                        # uWSGI's plugin wants HOST:PORT after amqp://
                        results.append(bench_spawn("amqp", "uWSGI 2.0", [UWSGI, "--plugin", "emperor_amqp",
                                                   "--emperor", "amqp://127.0.0.1:5672"], src.add,
                                                   push_n, False, workdir))
            finally:
                src.close()
        if want("zmq"):
            for who in ("monitor", "imperium", "uWSGI 2.0"):
                src = ZmqSource()  # a fresh endpoint for each binder
                try:
                    if who == "monitor":
                        results.append(bench_monitor("zmq", ZmqMonitor, src.arg(), src.add, push_n, False))
                    elif opts.no_spawn:
                        pass
                    elif who == "imperium" and have_imperium:
                        results.append(bench_spawn("zmq", who, [IMPERIUM, "--emperor", src.arg()],
                                                   src.add, push_n, False, workdir))
                    elif who == "uWSGI 2.0" and Path(UWSGI).exists():
                        results.append(bench_spawn("zmq", who, [UWSGI, "--plugin", "emperor_zeromq",
                                                   "--emperor", src.arg()], src.add, push_n, False, workdir))
                finally:
                    src.close()
        if want("zoo"):
            src = ZooSource()
            try:
                results.append(bench_monitor("zoo", ZooMonitor, src.arg(), src.add, push_n, False))
                if have_imperium and not opts.no_spawn:
                    results.append(bench_spawn("zoo", "imperium", [IMPERIUM, "--emperor", src.arg(),
                                               "--emperor-fleet-member", "bench"],
                                               src.add, push_n, False, workdir))
            finally:
                src.close()
        if want("zoo-failover") and have_imperium and not opts.no_spawn:
            results.append(bench_failover(opts.failovers, workdir))
        if want("mongodb"):
            src = MongoSource()
            try:
                case = "mongodb" + ("" if src.real else " (mongomock)")
                results.append(bench_monitor(case, MongoMonitor, src.arg(), src.add, poll_n, True))
                if src.real and have_imperium and not opts.no_spawn:
                    results.append(bench_spawn(case, "imperium", [IMPERIUM, "--emperor", src.arg()],
                                               src.add, poll_n, True, workdir))
            finally:
                src.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    load = os.getloadavg()[0]
    print(f"\nsource change → event / vassal exec'd, emperor-freq {FREQ:g} s, ms; "
          f"{os.cpu_count()} CPUs, load average {load:.1f} at the end"
          + ("" if have_imperium else "  (imperium emperor not available: spawn figures for uWSGI only)"))
    print("| case | measured to | p50 | p95 | max | n | note |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(r.row())
    return 0


if __name__ == "__main__":
    sys.exit(main())
