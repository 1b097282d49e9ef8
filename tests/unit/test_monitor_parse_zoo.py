"""zoo:// URIs (monitors/zoo_source.py): hosts, credentials, chroot, member path, timeout, TLS."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emperor.events import MonitorContext
from monitors.zoo_source import parse_zoo_arg, redact
from tests.conftest import need_module

need_module("kazoo")


def test_plain() -> None:
    s = parse_zoo_arg("zoo://zk1:2181,zk2,[::1]:2182/imperium/vassals")
    assert s.hosts == "zk1:2181,zk2:2181,[::1]:2182"
    assert s.path == "/imperium/vassals"
    assert s.members == "/imperium/vassals.members"
    assert (s.chroot, s.user, s.password, s.timeout, s.tls) == ("", None, None, 10.0, {})
    assert s.where == "zk1:2181,zk2:2181,[::1]:2182/imperium/vassals"


def test_default_host_and_trailing_slash() -> None:
    s = parse_zoo_arg("zoo:///apps/")
    assert (s.hosts, s.path) == ("127.0.0.1:2181", "/apps")


def test_credentials_chroot_members_timeout() -> None:
    s = parse_zoo_arg("zoo://ops:s%40cr%3At@zk:2181/vassals?chroot=/tenant&members=/fleet/web&timeout=4.5")
    assert (s.user, s.password) == ("ops", "s@cr:t")
    assert (s.chroot, s.path, s.members, s.timeout) == ("/tenant", "/vassals", "/fleet/web", 4.5)
    assert s.where == "ops@zk:2181/tenant/vassals"
    assert "s@cr" not in repr(s)


def test_tls() -> None:
    s = parse_zoo_arg("zoo://zk:2281/v?ca=/etc/zk/ca.pem&certfile=/c.pem&keyfile=/k.pem&verify=0")
    assert s.tls == {"ca": "/etc/zk/ca.pem", "certfile": "/c.pem", "keyfile": "/k.pem",
                     "use_ssl": True, "verify_certs": False}
    assert parse_zoo_arg("zoo://zk/v?tls=1&check_hostname=1").tls == {"use_ssl": True,
                                                                       "check_hostname": True}
    client = parse_zoo_arg("zoo://zk/v?tls=1&verify=0").client()
    assert client.use_ssl and not client.verify_certs


def test_client_gets_hosts_chroot_and_digest() -> None:
    client = parse_zoo_arg("zoo://u:p@h1:1,h2:2/v?chroot=/c").client()
    assert client.chroot == "/c"
    assert sorted(client.hosts) == [("h1", 1), ("h2", 2)]
    assert ("digest", "u:p") in client.auth_data
    assert client.default_acl is not None  # what we create is the identity's alone


@pytest.mark.parametrize(("arg", "why"), [
    ("zoo://zk", "needs a path"),
    ("zoo://zk/", "cannot be the root"),
    ("zoo://zk/a//b", "empty, '.', '..'"),
    ("zoo://zk/a/../b", "empty, '.', '..'"),
    ("zoo://zk:99999/a", "bad port"),
    ("zoo://zk:x/a", "bad ZooKeeper host"),
    ("zoo://a b/a", "bad ZooKeeper host"),
    ("zoo://zk/a?tiemout=3", "unknown parameter 'tiemout'"),
    ("zoo://zk/a?timeout=0", "timeout='0'"),
    ("zoo://zk/a?timeout=soon", "timeout='soon'"),
    ("zoo://zk/a?members=/a/m", "must lie outside /a"),
    ("zoo://zk/a/b?members=/a", "must lie outside /a/b"),
    ("zoo://zk/a?members=/a", "must lie outside"),
    ("zoo://zk/a?members=rel", "absolute path"),
    ("zoo://zk/a?chroot=c", "absolute path"),
    ("zoo://zk/a?tls=maybe", "neither 1 nor 0"),
    ("zoo://zk/a?tls=0&ca=/x", "TLS parameters given with tls=0"),
    ("zoo://user@zk/a", "USER:PASSWORD"),
    ("zoo://:pw@zk/a", "USER:PASSWORD"),
    ("pg://x/a", "expected zoo://"),
])
def test_bad_uris_say_why(arg: str, why: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_zoo_arg(arg)
    assert why in str(info.value)


def test_passwords_never_in_errors_or_ids() -> None:
    with pytest.raises(ValueError) as info:
        parse_zoo_arg("zoo://ops:hunter2@zk/a?bogus=1")
    assert "hunter2" not in str(info.value)
    assert redact("zoo://ops:hunter2@zk/a?keyfile_password=x&k=1") == "zoo://ops:***@zk/a?keyfile_password=***&k=1"
    from monitors.zoo import ZooMonitor

    m = ZooMonitor("zoo://ops:hunter2@zk/a", lambda *_: None, MonitorContext(fleet_member="m"))
    assert "hunter2" not in m.id
    # passwords that should have been percent-encoded: never a piece of them either
    assert parse_zoo_arg("zoo://ops:hun@ter2@zk/a").password == "hun@ter2"
    assert redact("zoo://ops:hun@ter2@zk/a") == "zoo://ops:***@zk/a"
    with pytest.raises(ValueError) as info:
        parse_zoo_arg("zoo://ops:hun/ter2@zk/a")
    assert "hun" not in str(info.value) and "ter2" not in str(info.value)
    assert "percent-encode" in str(info.value)
    assert redact("zoo://zk:2181/a") == "zoo://zk:2181/a"  # no credentials: nothing hidden


def test_member_options_are_checked_at_start() -> None:
    from monitors.zoo import ZooMonitor

    with pytest.raises(ValueError, match="emperor-fleet-member: fleet member name 'a/b'"):
        ZooMonitor("zoo://zk/a", lambda *_: None, MonitorContext(fleet_member="a/b"))
    with pytest.raises(ValueError, match="emperor-fleet-labels: value of label zone 'e u'"):
        ZooMonitor("zoo://zk/a", lambda *_: None, MonitorContext(fleet_labels=("zone=e u",)))
    m = ZooMonitor("zoo://zk/a", lambda *_: None, MonitorContext(fleet_labels=("zone=eu,ssd",)))
    assert m.labels == {"zone": "eu", "ssd": ""} and m.member  # the host name by default


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_fuzz_only_value_errors(tail: str) -> None:
    """Whatever follows zoo://, parsing gives a source or a ValueError, nothing else."""
    try:
        s = parse_zoo_arg("zoo://" + tail)
    except ValueError:
        return
    assert s.path.startswith("/") and s.members.startswith("/") and s.path != s.members
