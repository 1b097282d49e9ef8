"""Monitors are found by URI scheme: built-ins, and third parties through entry points."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from emperor.events import Monitor
from monitors import UnknownMonitor, monitor_class, split_uri


@pytest.mark.parametrize(("arg", "scheme"), [
    ("pg://host=127.0.0.1 dbname=test;SELECT name,config,1 FROM v", "pg"),
    ("mongodb://127.0.0.1:27017,emperor.vassals,{enabled:1}", "mongodb"),
    ("amqp://192.168.0.1:5672", "amqp"),
    ("zmq://tcp://127.0.0.1:5252", "zmq"),
    ("/etc/uwsgi/vassals", "dir"),
    ("/etc/vassals/*.ini", "glob"),
])
def test_split_uri(arg: str, scheme: str) -> None:
    assert split_uri(arg) == (scheme, arg)


@pytest.mark.parametrize(("scheme", "qualname"), [
    ("pg", "monitors.pg.PgMonitor"),
    ("mongodb", "monitors.mongodb.MongoMonitor"),
    ("amqp", "monitors.amqp.AmqpMonitor"),
    ("zmq", "monitors.zmq.ZmqMonitor"),
])
def test_network_monitors_by_scheme(scheme: str, qualname: str) -> None:
    cls = monitor_class(scheme)
    assert f"{cls.__module__}.{cls.__qualname__}" == qualname
    assert issubclass(cls, Monitor) and cls.scheme == scheme


def test_entry_points_list_the_network_monitors() -> None:
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="imperium.monitors")}
    for scheme in ("pg", "mongodb", "amqp", "zmq"):
        assert eps[scheme].startswith(f"monitors.{scheme}:")
        assert eps[scheme] and monitor_class(scheme).__name__ == eps[scheme].split(":")[1]


def _install_plugin(root: Path, scheme: str, module: str) -> None:
    """A third-party distribution on sys.path declaring one imperium.monitors entry point."""
    (root / f"{module}.py").write_text(textwrap.dedent(f"""
        from emperor.events import Monitor

        class PluginMonitor(Monitor):
            scheme = {scheme!r}

            async def run(self):
                pass
    """))
    dist = root / f"{module}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[imperium.monitors]\n{scheme} = {module}:PluginMonitor\n")


def test_third_party_scheme_through_entry_points(tmp_path: Path, monkeypatch) -> None:
    _install_plugin(tmp_path, "etcd", "imperium_etcd_plugin")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        cls = monitor_class("etcd")
        assert cls.__module__ == "imperium_etcd_plugin" and cls.scheme == "etcd"
    finally:
        sys.modules.pop("imperium_etcd_plugin", None)


def test_entry_point_may_replace_a_builtin(tmp_path: Path, monkeypatch) -> None:
    _install_plugin(tmp_path, "zmq", "imperium_zmq_replacement")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert monitor_class("zmq").__module__ == "imperium_zmq_replacement"
    finally:
        sys.modules.pop("imperium_zmq_replacement", None)


def test_unknown_scheme_names_the_known_ones() -> None:
    with pytest.raises(UnknownMonitor) as err:
        monitor_class("gopher")
    message = str(err.value)
    assert "'gopher'" in message
    for scheme in ("amqp", "mongodb", "pg", "zmq"):
        assert scheme in message


def test_missing_client_library_names_the_extra() -> None:
    from monitors.deps import require

    require("json", "pg", "pg")  # present: nothing happens
    with pytest.raises(ValueError, match=r"pg:// needs the no_such_client_lib package: pip install 'imperium\[pg\]'"):
        require("no_such_client_lib", "pg", "pg")
