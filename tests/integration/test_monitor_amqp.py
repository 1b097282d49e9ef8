"""amqp:// against the real RabbitMQ on 127.0.0.1:5672: the monitor in-process, its events checked."""

from __future__ import annotations

import http.server
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from emperor.events import Available, Destroy, MonitorContext, Sync, Touch, Unavailable
from monitors.amqp import EXCHANGE, AmqpMonitor
from tests.conftest import free_port, held_service, need_module, need_service, wait_until
from tests.integration.monitor_harness import (  # noqa: F401  (fixture)
    MonitorRun,
    monitors_fixture,
)

pika = need_module("pika")

# the outage test stops the broker: see service_lock for how tests keep out of its way
pytestmark = pytest.mark.service("rabbitmq")

URL = "amqp://guest:guest@127.0.0.1:5672/"


def rabbit_ready() -> bool:
    try:
        conn = pika.BlockingConnection(pika.URLParameters(URL + "?connection_attempts=1&socket_timeout=2"))
    except pika.exceptions.AMQPError:
        return False
    conn.close()
    return True


class Publisher:
    """Publishes on a fanout exchange: one of the test's own, or uWSGI's default one."""

    def __init__(self, exchange: str | None = None) -> None:
        self.exchange = exchange or f"imperium-test-{uuid.uuid4().hex[:8]}"
        self.conn = pika.BlockingConnection(pika.URLParameters(URL))
        self.channel = self.conn.channel()
        self.channel.exchange_declare(exchange=self.exchange, exchange_type="fanout")

    def arg(self, extra: str = "") -> str:
        """The monitor argument listening on this publisher's exchange."""
        params = [] if self.exchange == EXCHANGE else [f"exchange={self.exchange}"]
        params += [extra] if extra else []
        return URL + ("?" + "&".join(params) if params else "")

    def send(self, body: bytes | str, routing_key: str = "") -> None:
        if isinstance(body, str):
            body = body.encode()
        self.channel.basic_publish(exchange=self.exchange, routing_key=routing_key, body=body)

    def close(self) -> None:
        if self.conn.is_open:
            self.conn.close()

    def cleanup(self) -> None:
        self.close()
        if self.exchange != EXCHANGE and rabbit_ready():
            conn = pika.BlockingConnection(pika.URLParameters(URL))
            conn.channel().exchange_delete(exchange=self.exchange)
            conn.close()


@contextmanager
def rabbit(exclusive: bool = False, exchange: str | None = None) -> Iterator[Publisher]:
    """A publisher, with the broker held shared (or exclusive, to stop it)."""
    with held_service("rabbitmq", 5672, rabbit_ready, "RabbitMQ on 127.0.0.1:5672", exclusive, 60):
        p = Publisher(exchange)
        try:
            yield p
        finally:
            p.cleanup()


@pytest.fixture
def publisher() -> Iterator[Publisher]:
    """On an exchange of the test's own, so that concurrent tests do not hear each other."""
    with rabbit() as p:
        yield p


@pytest.fixture
def outage_publisher() -> Iterator[Publisher]:
    """For a test that stops the broker: no other test uses it meanwhile."""
    with rabbit(exclusive=True) as p:
        yield p


def consuming(run: MonitorRun) -> None:
    wait_until(run.monitor.consuming.is_set, timeout=15,
               message=f"the monitor subscribed; log: {run.logs.text()[-800:]}")


def test_direct_config_add_reload_remove(monitors) -> None:
    # uWSGI's own form and its default exchange; the only test on uwsgi.emperor
    with rabbit(exchange=EXCHANGE) as publisher:
        direct_config_add_reload_remove(publisher, monitors)


def direct_config_add_reload_remove(publisher: Publisher, monitors) -> None:
    run = monitors(AmqpMonitor, "amqp://127.0.0.1:5672", MonitorContext())
    consuming(run)
    publisher.send("[uwsgi]\nprocesses = 1\n", routing_key="trac.ini")
    run.wait(lambda ev: ev, message="touch")
    first = run.all()[0]
    assert isinstance(first, Touch) and first.name == "trac.ini"
    assert first.config == b"[uwsgi]\nprocesses = 1\n" and first.path is None

    publisher.send("[uwsgi]\nprocesses = 2\n", routing_key="trac.ini")
    run.wait(lambda ev: len(ev) == 2, message="reload")
    second = run.all()[1]
    assert isinstance(second, Touch) and second.mtime > first.mtime
    assert second.config == b"[uwsgi]\nprocesses = 2\n"

    publisher.send(b"", routing_key="trac.ini")
    run.wait(lambda ev: len(ev) == 3, message="destroy")
    assert run.all()[2] == Destroy("trac.ini")
    assert not run.all(Sync) and not run.all(Unavailable)


def test_path_messages(publisher: Publisher, monitors, tmp_path: Path) -> None:
    conf = tmp_path / "mydjangoapp.xml"
    conf.write_text("<uwsgi><processes>1</processes></uwsgi>")
    run = monitors(AmqpMonitor, publisher.arg(), MonitorContext())
    consuming(run)
    publisher.send(str(conf) + "\n")  # a trailing newline from a shell publisher is fine
    run.wait(lambda ev: ev, message="touch")
    touch = run.all()[0]
    assert isinstance(touch, Touch)
    assert (touch.name, touch.path, touch.config) == (str(conf), str(conf), None)

    conf.unlink()
    publisher.send(str(conf))
    run.wait(lambda ev: len(ev) == 2, message="destroy for a missing file")
    assert run.all()[1] == Destroy(str(conf))


class ConfServer:
    """A real HTTP server handing out configs: /ok.ini answers 200, anything else 404."""

    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path.endswith("/ok.ini"):
                    body = b"[uwsgi]\nsocket = :3031\n"
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self.send_error(404)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_http_urls_are_fetched(publisher: Publisher, monitors) -> None:
    srv = ConfServer()
    try:
        run = monitors(AmqpMonitor, publisher.arg(), MonitorContext())
        consuming(run)
        ok = f"http://127.0.0.1:{srv.port}/confs/ok.ini"
        gone = f"http://127.0.0.1:{srv.port}/confs/gone.ini"
        dead = f"http://127.0.0.1:{free_port()}/confs/dead.ini"
        publisher.send(ok)
        publisher.send(gone)
        publisher.send(dead)  # cannot be fetched at all: logged, nothing happens
        publisher.send("[uwsgi]\n", routing_key="marker.ini")
        run.wait(lambda ev: any(getattr(e, "name", "") == "marker.ini" for e in ev), message="marker")
        events = run.all()
        assert events[0] == Touch(name=ok, mtime=events[0].mtime, config=b"[uwsgi]\nsocket = :3031\n")
        assert events[1] == Destroy(gone)
        assert [e.name for e in events] == [ok, gone, "marker.ini"]
        assert "cannot fetch" in run.logs.text() and "dead.ini" in run.logs.text()
    finally:
        srv.close()


def test_bad_messages_are_logged_and_dropped(publisher: Publisher, monitors) -> None:
    run = monitors(AmqpMonitor, publisher.arg(), MonitorContext())
    consuming(run)
    publisher.send(b"")  # no key, no body
    publisher.send(b"/x" * 200)  # too long for a path
    publisher.send(b"/\xff\0.ini")
    publisher.send(b"relative/app.ini")
    publisher.send(b"[uwsgi]\n", routing_key="noextension")
    publisher.send(b"[uwsgi]\n", routing_key="ok.ini")
    run.wait(lambda ev: ev, message="the good message")
    assert [(type(e), e.name) for e in run.all()] == [(Touch, "ok.ini")]
    text = run.logs.text()
    for needle in ("empty message without a routing key", "too long for a path", "NUL byte",
                   "neither an absolute path", "'noextension'"):
        assert needle in text


def test_every_emperor_sees_every_deploy(publisher: Publisher, monitors) -> None:
    runs = [monitors(AmqpMonitor, publisher.arg(), MonitorContext()) for _ in range(2)]
    for run in runs:
        consuming(run)
    assert runs[0].monitor.queue_name != runs[1].monitor.queue_name
    publisher.send("[uwsgi]\n", routing_key="cluster.ini")
    for run in runs:
        run.wait(lambda ev: ev and ev[0].name == "cluster.ini", message="the deploy")


def test_named_durable_queue_keeps_messages_while_away(publisher: Publisher, monitors) -> None:
    queue = f"imperium-test-{uuid.uuid4().hex[:8]}"
    try:
        first = monitors(AmqpMonitor, publisher.arg(f"queue={queue}"), MonitorContext())
        consuming(first)
        first.stop()
        # published while no emperor consumes: the durable queue holds it
        publisher.send("[uwsgi]\n", routing_key="meanwhile.ini")
        second = monitors(AmqpMonitor, publisher.arg(f"queue={queue}"), MonitorContext())
        second.wait(lambda ev: ev and ev[0].name == "meanwhile.ini", timeout=15,
                    message="the message published while away")
    finally:
        publisher.channel.queue_delete(queue=queue)


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


def test_outage_leaves_vassals_alone_and_resubscribes(outage_publisher: Publisher, monitors) -> None:
    publisher = outage_publisher
    if subprocess.run(["which", "rabbitmqctl"], capture_output=True).returncode:
        need_service("rabbitmq", False, "rabbitmqctl is needed to stop and start the broker")
    run = monitors(AmqpMonitor, publisher.arg(), MonitorContext())
    consuming(run)
    publisher.send("[uwsgi]\n", routing_key="before.ini")
    run.wait(lambda ev: ev, message="touch before the outage")
    publisher.close()
    mark = run.mark()
    try:
        rabbitmqctl("stop_app")
        run.wait(lambda ev: any(isinstance(e, Unavailable) for e in ev), mark, timeout=20,
                 message="Unavailable after stop_app")
        # an outage is never a removal
        assert not run.since(mark, Destroy) and not run.since(mark, Sync)
    finally:
        rabbitmqctl("start_app")
        wait_until(rabbit_ready, timeout=60, message="RabbitMQ accepting connections again")
    run.wait(lambda ev: any(isinstance(e, Available) for e in ev), mark, timeout=30,
             message="Available after start_app")
    consuming(run)
    p2 = Publisher(publisher.exchange)
    try:
        p2.send("[uwsgi]\n", routing_key="after.ini")
        run.wait(lambda ev: any(getattr(e, "name", "") == "after.ini" for e in ev), mark,
                 message="a deploy after the outage")
    finally:
        p2.close()
    kinds = [type(e) for e in run.since(mark)]
    assert kinds.count(Unavailable) == 1 and kinds.count(Available) == 1
    assert not run.since(mark, Destroy)
