"""amqp:// end to end: a real emperor process, the real RabbitMQ, fake vassals with journals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need_module, pid_alive, wait_until
from tests.integration.monitor_e2e import Emperor, need_emperor
from tests.integration.test_monitor_amqp import Publisher, rabbit, rabbit_ready, rabbitmqctl

pika = need_module("pika")

pytestmark = pytest.mark.service("rabbitmq")


@pytest.fixture
def publisher() -> Iterator[Publisher]:
    need_emperor()
    with rabbit() as p:
        yield p


@pytest.fixture
def outage_publisher() -> Iterator[Publisher]:
    need_emperor()
    with rabbit(exclusive=True) as p:
        yield p


def subscribed(emp: Emperor, count: int = 1) -> None:
    wait_until(lambda: emp.log().count("consuming") >= count, timeout=20,
               message=f"the emperor subscribed: {emp.log()[-1500:]}")


def test_messages_spawn_reload_and_stop_vassals(publisher: Publisher, procs, tmp_path: Path) -> None:
    emp = Emperor(procs, tmp_path, publisher.arg())
    subscribed(emp)
    publisher.send("[uwsgi]\n# 1\n", routing_key="direct.ini")
    first = emp.wait_line("direct.ini", "start", "[uwsgi]\n# 1\n")
    publisher.send("[uwsgi]\n# 2\n", routing_key="direct.ini")
    assert emp.wait_line("direct.ini", "reload", "[uwsgi]\n# 2\n").pid == first.pid

    conf = tmp_path / "onfile.ini"
    conf.write_text("[uwsgi]\n")
    publisher.send(str(conf))
    path_vassal = emp.wait_line(str(conf), "start")  # the vassal reads the file itself

    publisher.send(b"", routing_key="direct.ini")
    emp.wait_line("direct.ini", "stop")
    conf.unlink()
    publisher.send(str(conf))
    emp.wait_line(str(conf), "stop")
    wait_until(lambda: not pid_alive(first.pid) and not pid_alive(path_vassal.pid),
               message="stopped vassals gone")


def test_bad_messages_do_not_disturb_the_others(publisher: Publisher, procs, tmp_path: Path) -> None:
    emp = Emperor(procs, tmp_path, publisher.arg())
    subscribed(emp)
    publisher.send(b"[uwsgi]\n", routing_key="keep.ini")
    keep = emp.wait_line("keep.ini", "start")
    publisher.send(b"")
    publisher.send(b"relative/x.ini")
    publisher.send(b"[uwsgi]\n", routing_key="noextension")
    publisher.send(b"[uwsgi]\n", routing_key="after.ini")
    emp.wait_line("after.ini", "start")
    assert emp.running("keep.ini") == keep.pid and not emp.lines("noextension")
    log = emp.log()
    assert "empty message without a routing key" in log and "neither an absolute path" in log


def test_outage_leaves_vassals_running_then_resumes(outage_publisher: Publisher, procs,
                                                    tmp_path: Path) -> None:
    publisher = outage_publisher
    emp = Emperor(procs, tmp_path, publisher.arg())
    subscribed(emp)
    publisher.send(b"[uwsgi]\n# 1\n", routing_key="steady.ini")
    steady = emp.wait_line("steady.ini", "start")
    publisher.close()
    try:
        rabbitmqctl("stop_app")
        wait_until(lambda: "unavailable" in emp.log(), timeout=20,
                   message=f"the emperor noticed the outage: {emp.log()[-1500:]}")
        assert emp.running("steady.ini") == steady.pid
        assert [x.what for x in emp.lines("steady.ini")] == ["start"]
    finally:
        rabbitmqctl("start_app")
        wait_until(rabbit_ready, timeout=60, message="RabbitMQ accepting connections again")
    subscribed(emp, 2)
    p2 = Publisher(publisher.exchange)
    try:
        p2.send(b"[uwsgi]\n# 2\n", routing_key="steady.ini")
        p2.send(b"[uwsgi]\n", routing_key="new.ini")
        emp.wait_line("steady.ini", "reload", "[uwsgi]\n# 2\n")
        emp.wait_line("new.ini", "start")
    finally:
        p2.close()
    assert emp.running("steady.ini") == steady.pid
