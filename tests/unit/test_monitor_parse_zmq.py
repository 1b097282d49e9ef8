"""zmq:// argument and message parsing (no sockets)."""

from __future__ import annotations

import pytest

from emperor.events import Destroy, Touch
from monitors.zmq import BadMessage, parse_message, parse_zmq_arg


def test_endpoint() -> None:
    assert parse_zmq_arg("zmq://tcp://127.0.0.1:5252") == "tcp://127.0.0.1:5252"
    assert parse_zmq_arg("zmq://ipc:///run/emperor.sock") == "ipc:///run/emperor.sock"
    with pytest.raises(ValueError, match="zmq://TRANSPORT://ADDRESS"):
        parse_zmq_arg("zmq://127.0.0.1:5252")


def test_touch_parts() -> None:
    assert parse_message([b"touch", b"foo.ini", b"[uwsgi]\nsocket=:4142"], now=5.0) == Touch(
        name="foo.ini", mtime=5.0, config=b"[uwsgi]\nsocket=:4142")
    assert parse_message([b"touch", b"foo.ini"], now=5.0) == Touch(name="foo.ini", mtime=5.0)
    full = parse_message([b"touch", b"f.ini", b"", b"33", b"34", b"/tmp/f.sock"], now=1.0)
    assert full == Touch(name="f.ini", mtime=1.0, config=None, uid=33, gid=34, socket="/tmp/f.sock")
    assert parse_message([b"touch", b"f.ini", b"c", b"", b""], now=1.0).uid is None


def test_touch_mtime_is_now() -> None:
    a = parse_message([b"touch", b"a.ini"])
    b = parse_message([b"touch", b"a.ini"])
    assert isinstance(a, Touch) and isinstance(b, Touch) and b.mtime >= a.mtime > 1e9


def test_names_are_bytes_as_in_uwsgi() -> None:
    """A name that is not UTF-8 is carried as os.fsdecode() would, not dropped."""
    touch = parse_message([b"touch", b"\xff.ini", b"[uwsgi]\n"], now=5.0)
    assert touch == Touch(name="\udcff.ini", mtime=5.0, config=b"[uwsgi]\n")
    assert parse_message([b"destroy", b"\xff.ini"]) == Destroy("\udcff.ini")


def test_destroy() -> None:
    assert parse_message([b"destroy", b"foo.ini"]) == Destroy("foo.ini")


@pytest.mark.parametrize(("parts", "why"), [
    ([b"touch"], "command and instance name required"),
    ([], "command and instance name required"),
    ([b"reload", b"a.ini"], "unknown command 'reload'"),
    ([b"touch", b""], "empty vassal name"),
    ([b"\xfftouch", b"a.ini"], "command is not UTF-8"),
    ([b"touch", b"a.ini", b"c", b"-1"], "is not a number"),
    ([b"touch", b"a.ini", b"c", b"1", b"staff"], "gid 'staff' of vassal a.ini is not a number"),
])
def test_bad_messages(parts: list[bytes], why: str) -> None:
    with pytest.raises(BadMessage, match=why):
        parse_message(parts)
