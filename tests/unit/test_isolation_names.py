"""Parsing of the isolation options: namespace and capability names, cgroup settings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emperor.isolation import capabilities, cgroups, namespaces
from emperor.isolation.jail import JailSpec
from emperor.isolation.linux import Clone


def test_namespace_names_and_uwsgi_aliases() -> None:
    assert namespaces.parse("fs,net,ipc,pid,uts,user", "x") == (
        Clone.NEWNS | Clone.NEWNET | Clone.NEWIPC | Clone.NEWPID | Clone.NEWUTS | Clone.NEWUSER)
    for alias in ("fs", "ns", "mount", "mnt"):
        assert namespaces.parse(alias, "x") == Clone.NEWNS
    assert namespaces.parse(" net , ,uts", "x") == Clone.NEWNET | Clone.NEWUTS
    assert namespaces.describe(Clone.NEWNET | Clone.NEWPID) == "net,pid"


@pytest.mark.parametrize("value, why", [
    ("net,bogus", "emperor-use-clone = net,bogus: unknown namespace subsystem: bogus"),
    ("files", "files is a clone() flag, not a namespace"),
    ("NET", "unknown namespace subsystem: NET"),
])
def test_bad_namespace_names_are_named(value: str, why: str) -> None:
    with pytest.raises(ValueError, match=why.replace("(", r"\(").replace(")", r"\)")):
        namespaces.parse(value, "emperor-use-clone")


@pytest.mark.parametrize("parse, valid", [
    (namespaces.parse, lambda flags: not flags & ~namespaces.NAMESPACES),
    (capabilities.parse, lambda caps: caps and all(0 <= c <= 63 for c in caps)),
])
@given(value=st.text(max_size=40))
def test_parsers_take_any_text(parse, valid, value: str) -> None:  # type: ignore[no-untyped-def]
    """Anything at all: a value, or one ValueError naming the option."""
    try:
        got = parse(value, "opt")
    except ValueError as exc:
        assert str(exc).startswith("opt = ")
    else:
        assert valid(got)


def test_capability_names_and_numbers() -> None:
    assert capabilities.parse("net_bind_service,sys_time,net_bind_service", "cap") == [10, 25]
    assert capabilities.parse("setuid, 6", "cap") == [7, 6]
    assert capabilities.describe([10, 7]) == "net_bind_service,setuid"
    assert capabilities.mask([0, 10]) == 0b10000000001


@pytest.mark.parametrize("value, why", [
    ("net_bind_service,typo", "unknown capability: typo"),
    ("", "empty capabilities mask"),
    ("999", "beyond this kernel's last one"),
])
def test_bad_capabilities_are_named(value: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        capabilities.parse(value, "emperor-cap")


def test_cgroup_settings_in_both_versions_words() -> None:
    assert cgroups.translate("memory.limit_in_bytes", "64M", 2) == [("memory.max", "64M")]
    assert cgroups.translate("memory.max", "max", 1) == [("memory.limit_in_bytes", "-1")]
    assert cgroups.translate("cpu.max", "50000 100000", 1) == [("cpu.cfs_period_us", "100000"),
                                                                ("cpu.cfs_quota_us", "50000")]
    assert cgroups.translate("cpu.cfs_quota_us", "-1", 2) == [("cpu.max", "max 100000")]
    assert cgroups.translate("cpu.shares", "1024", 2) == [("cpu.weight", "39")]
    assert cgroups.translate("cpu.weight", "100", 1) == [("cpu.shares", "2597")]
    assert cgroups.translate("pids.max", "10", 2) == [("pids.max", "10")]
    assert cgroups.parse_opt("memory.max=1G") == ("memory.max", "1G")
    assert cgroups.parse_opt("pids.max:20") == ("pids.max", "20")
    with pytest.raises(cgroups.CgroupError, match="invalid syntax"):
        cgroups.parse_opt("nothing")


def test_relative_cgroup_names_stay_below_ours() -> None:
    for bad in ("../escape", "a/../../b", ".hidden"):
        with pytest.raises(cgroups.CgroupError, match="may not leave"):
            cgroups.resolve(bad, [])


def test_mountinfo_parsing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    info = tmp_path / "mountinfo"
    info.write_text(
        "30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory\n"
        "31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        "32 25 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
        "33 25 0:29 / /proc rw - proc proc rw\n")
    found = cgroups.hierarchies(str(info))
    assert [(h.version, h.mountpoint) for h in found] == [
        (1, "/sys/fs/cgroup/memory"), (1, "/sys/fs/cgroup/cpu,cpuacct"), (2, "/sys/fs/cgroup/unified")]
    assert found[1].controllers == {"cpu", "cpuacct"}


def test_jail_spec_travels_as_json() -> None:
    spec = JailSpec(clone=int(Clone.NEWPID | Clone.NEWNET), uid=1000, gid=1000, initgroups=True,
                    caps=[10], cgroups=["/sys/fs/cgroup/pids/x"])
    assert JailSpec.from_json(spec.to_json()) == spec
    assert spec.pid_ns and spec.needed and not JailSpec().needed


@given(st.text(min_size=1, max_size=300), st.text(min_size=1, max_size=300))
def test_vassal_cgroup_names_never_shared(a: str, b: str) -> None:
    """Two vassals, two cgroups: names changed to fit a directory name (unsafe characters,
    more than 200 of them) cannot meet another vassal's."""
    from emperor.isolation.limits import VassalCgroups

    groups = VassalCgroups([], 42)
    if a != b:
        assert groups.dir_name(a) != groups.dir_name(b)
    for name in (a, b):
        made = groups.dir_name(name)
        assert made.startswith("imperium-42-") and "/" not in made and len(made) < 255


def test_vassal_cgroup_name_is_the_plain_name_when_it_fits() -> None:
    from emperor.isolation.limits import VassalCgroups

    groups = VassalCgroups([], 42)
    assert groups.dir_name("app.ini") == "imperium-42-app.ini"
    assert groups.dir_name("a b.ini") != groups.dir_name("a_b.ini") == "imperium-42-a_b.ini"
