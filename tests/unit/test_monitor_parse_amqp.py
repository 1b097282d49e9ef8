"""amqp:// argument parsing and message interpretation (no broker)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from emperor.events import Destroy, Touch
from monitors.amqp import EXCHANGE, BadMessage, interpret, parse_amqp_arg
from tests.conftest import need_module


def test_uwsgi_form() -> None:
    src = parse_amqp_arg("amqp://192.168.0.1:5672")
    assert (src.queue, src.exchange) == (None, EXCHANGE)
    parts = urlsplit(src.url)
    assert (parts.hostname, parts.port) == ("192.168.0.1", 5672)
    assert parse_qs(parts.query)["heartbeat"] == ["30"]


def test_our_parameters_are_taken_out() -> None:
    src = parse_amqp_arg("amqp://u:p@h/%2F?queue=emperor-web1&exchange=deploys&heartbeat=5")
    assert (src.queue, src.exchange) == ("emperor-web1", "deploys")
    query = parse_qs(urlsplit(src.url).query)
    assert "queue" not in query and "exchange" not in query
    assert query["heartbeat"] == ["5"]  # the user's value wins over our default


def test_pika_accepts_what_we_hand_it() -> None:
    pika = need_module("pika")
    params = pika.URLParameters(parse_amqp_arg("amqp://u:p@h:5673/vh?queue=q").url)
    assert (params.host, params.port, params.virtual_host, params.credentials.username) == ("h", 5673, "vh", "u")


@pytest.mark.parametrize("arg", ["amqp://", "http://h", "amqp://h?exchange="])
def test_bad_arguments(arg: str) -> None:
    with pytest.raises(ValueError):
        parse_amqp_arg(arg)


def test_routing_key_is_name_body_is_config() -> None:
    assert interpret("a.ini", b"[uwsgi]\n", now=lambda: 7.0) == Touch(name="a.ini", mtime=7.0, config=b"[uwsgi]\n")
    assert interpret("a.ini", b"") == Destroy("a.ini")


def test_path_body(tmp_path: Path) -> None:
    conf = tmp_path / "app.xml"
    conf.write_text("<uwsgi/>")
    assert interpret("", str(conf).encode(), now=lambda: 3.0) == Touch(name=str(conf), mtime=3.0, path=str(conf))
    tyrant = interpret("", str(conf).encode(), tyrant=True)
    assert isinstance(tyrant, Touch) and (tyrant.uid, tyrant.gid) == (os.getuid(), os.getgid())
    assert interpret("", str(tmp_path / "gone.xml").encode()) == Destroy(str(tmp_path / "gone.xml"))
    assert interpret("", str(tmp_path).encode()) == Destroy(str(tmp_path))  # not a regular file


def test_http_body() -> None:
    url = "http://cfg.example/confs/trac.ini"
    ok = interpret("", url.encode(), fetch=lambda u: (200, b"[uwsgi]\n"), now=lambda: 1.0)
    assert ok == Touch(name=url, mtime=1.0, config=b"[uwsgi]\n")
    assert interpret("", url.encode(), fetch=lambda u: (404, b"")) == Destroy(url)
    assert interpret("", url.encode(), fetch=lambda u: (204, b"")) == Destroy(url)

    def refused(u: str) -> tuple[int, bytes]:
        raise ConnectionRefusedError("refused")

    with pytest.raises(BadMessage, match="cannot fetch .* left as it is"):
        interpret("", url.encode(), fetch=refused)
    with pytest.raises(BadMessage, match="empty config"):
        interpret("", url.encode(), fetch=lambda u: (200, b""))


def test_a_path_is_bytes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A path that is not UTF-8 is a path like any other (the kernel's names are bytes)."""
    raw = os.fsencode(tmp_path) + b"/\xff.ini"
    assert interpret("", raw) == Destroy(os.fsdecode(raw))
    with open(raw, "w") as f:
        f.write("[uwsgi]\n")
    touch = interpret("", raw, now=lambda: 7.0)
    assert isinstance(touch, Touch) and touch.name == touch.path == os.fsdecode(raw)


@pytest.mark.parametrize(("body", "why"), [
    (b"", "empty message without a routing key"),
    (b"/" + b"x" * 254, "too long for a path"),
    (b"\xff/x.ini", "neither an absolute path"),
    (b"/x\0.ini", "NUL byte"),
    (b"x.ini", "neither an absolute path"),
])
def test_bad_bodies(body: bytes, why: str) -> None:
    with pytest.raises(BadMessage, match=why):
        interpret("", body)
