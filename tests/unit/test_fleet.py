"""Fleet placement (monitors/fleet.py): the fleet section of a config, labels, rendezvous hashing."""

from __future__ import annotations

import json
import os
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitors import fleet, zoo_member
from monitors.fleet import BadSpec, Constraint, FleetSpec, place, spec_from_config

# --- the fleet section, in each config format ---------------------------------------------------


@pytest.mark.parametrize(("name", "config"), [
    ("a.ini", "[uwsgi]\nsocket = :0\n[fleet]\nreplicas = 2\nlabels = zone=eu, !spot\n"),
    ("a.yaml", "uwsgi:\n  socket: ':0'\nfleet:\n  replicas: 2\n  labels: zone=eu, !spot\n"),
    ("a.yml", "fleet:\n  replicas: 2\n  labels:\n    - zone=eu\n    - '!spot'\nuwsgi:\n  master: 1\n"),
    ("a.json", '{"uwsgi": {"socket": ":0"}, "fleet": {"replicas": 2, "labels": ["zone=eu", "!spot"]}}'),
    ("a.js", '{"fleet": {"replicas": "2", "labels": "zone=eu,!spot"}, "uwsgi": {}}'),
])
def test_fleet_section_in_every_readable_format(name: str, config: str) -> None:
    spec = spec_from_config(name, config.encode())
    assert spec == FleetSpec(2, (Constraint("zone", "eu"), Constraint("spot", negate=True)))
    assert spec.describe() == "2 [zone=eu, !spot]"


@pytest.mark.parametrize(("name", "config"), [
    ("a.ini", b"[uwsgi]\nsocket = :0\n"),
    ("a.ini", b""),
    ("a.ini", b"\xff\xfe not utf-8 \x00"),
    ("a.yaml", b"uwsgi:\n  socket: :0\n"),
    ("a.json", b'{"uwsgi": {"socket": ":0"}}'),
    ("a.xml", b"<uwsgi><socket>:0</socket></uwsgi>"),
    ("a.conf", b"[fleet]\nreplicas = 2\n"),  # emperor-extra-extension: no format to read
])
def test_no_fleet_section_means_every_member(name: str, config: bytes) -> None:
    assert spec_from_config(name, config) == fleet.DEFAULT
    assert fleet.DEFAULT.replicas is None


def test_ini_fleet_section_is_what_uwsgi_ignores() -> None:
    """The vassal reads [uwsgi] and never sees [fleet]; repeated labels add up, last replicas wins."""
    spec = spec_from_config("a.ini", b"[fleet]\nreplicas = 3\nlabels = a\n[uwsgi]\nreplicas = 9\n"
                                     b"[fleet]\nreplicas = all\nlabels = b=1\n")
    assert spec == FleetSpec(None, (Constraint("a"), Constraint("b", "1")))


@pytest.mark.parametrize(("name", "config", "why"), [
    ("a.ini", "[fleet]\nreplicas = many\n", "replicas 'many' is not a positive number"),
    ("a.ini", "[fleet]\nreplicas = 0\n", "replicas '0'"),
    ("a.ini", "[fleet]\nreplicas = -1\n", "replicas '-1'"),
    ("a.ini", "[fleet]\nreplica = 2\n", "unknown key 'replica' in the fleet section"),
    ("a.ini", "[fleet]\nlabels = zone=e u\n", "label value 'e u'"),
    ("a.ini", "[fleet]\nlabels = =eu\n", "label ''"),
    ("a.json", '{"uwsgi": {}, "fleet": 2}', '"fleet" must be a mapping'),
    ("a.json", '{"uwsgi": {', "malformed json at line 1"),
    ("a.json", '[1, 2]', "a json config must be an object"),
    ("a.json", '{"fleet": {"replicas": true}}', "fleet.replicas must be a string or a number"),
    ("a.xml", "<uwsgi><fleet replicas='2'/></uwsgi>", "read from ini, yaml and json configs only"),
    ("a.yaml", "fleet:\n  replicas: [\n", "malformed yaml at line 3"),
    ("a.yaml", "fleet: 3\n", "\"fleet\" must be a mapping"),
])
def test_bad_fleet_sections_say_why(name: str, config: str, why: str) -> None:
    with pytest.raises(BadSpec) as info:
        spec_from_config(name, config.encode())
    assert why in str(info.value)


def test_too_many_constraints_refused() -> None:
    labels = ",".join(f"k{i}" for i in range(fleet.MAX_LABELS + 1))
    with pytest.raises(BadSpec, match="at most"):
        spec_from_config("a.ini", f"[fleet]\nlabels = {labels}\n".encode())


# --- member labels and names --------------------------------------------------------------------


def test_member_labels() -> None:
    assert fleet.parse_member_labels(["zone=eu, ssd", "arch=x86_64"]) == {
        "zone": "eu", "ssd": "", "arch": "x86_64"}
    assert fleet.parse_member_labels([]) == {}
    for bad in (["zone=e u"], ["=x"], ["a=b=c"], ["a" * 64]):
        with pytest.raises(BadSpec):
            fleet.parse_member_labels(bad)


@pytest.mark.parametrize("name", ["", ".", "..", "zookeeper", "a/b", "tab\there", "x" * 201, "\ud800"])
def test_member_names_that_cannot_be_znodes(name: str) -> None:
    with pytest.raises(BadSpec, match="cannot be a ZooKeeper node name"):
        fleet.check_member_name(name)


def test_constraints_match() -> None:
    labels = {"zone": "eu", "ssd": ""}
    assert Constraint("zone", "eu").matches(labels)
    assert not Constraint("zone", "us").matches(labels)
    assert Constraint("zone", "us", negate=True).matches(labels)
    assert Constraint("ssd").matches(labels) and not Constraint("ssd", negate=True).matches(labels)
    assert Constraint("gpu", negate=True).matches(labels) and not Constraint("gpu").matches(labels)
    assert Constraint("gpu", "1", negate=True).matches(labels)  # missing is "not equal"


# --- placement ------------------------------------------------------------------------------------

MEMBERS = {"a": {"zone": "eu"}, "b": {"zone": "eu", "ssd": ""}, "c": {"zone": "us"}, "d": {}}


def test_placement_is_replicas_eligible_members() -> None:
    assert sorted(place("x.ini", FleetSpec(), MEMBERS)) == ["a", "b", "c", "d"]
    assert len(place("x.ini", FleetSpec(2), MEMBERS)) == 2
    assert sorted(place("x.ini", FleetSpec(None, (Constraint("zone", "eu"),)), MEMBERS)) == ["a", "b"]
    assert place("x.ini", FleetSpec(5, (Constraint("ssd"),)), MEMBERS) == ["b"]  # fewer eligible
    assert place("x.ini", FleetSpec(1, (Constraint("gpu"),)), MEMBERS) == []
    assert place("x.ini", FleetSpec(2), {}) == []


def test_score_is_stable_across_processes() -> None:
    """No PYTHONHASHSEED in it: every emperor of a fleet must compute the same number."""
    assert fleet.score("web1", "shop.ini") == fleet.score("web1", "shop.ini")
    assert fleet.score("web1", "shop.ini") == int.from_bytes(
        __import__("hashlib").blake2b(b"web1\0shop.ini", digest_size=8).digest(), "big")


names = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/"),
                min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(members=st.sets(names, min_size=1, max_size=8), vassals=st.sets(names, min_size=1, max_size=10),
       replicas=st.integers(1, 10))
def test_placement_properties(members: set[str], vassals: set[str], replicas: int) -> None:
    """Exactly min(replicas, members) copies; the order of the member list does not matter; a
    member leaving moves only the vassals it ran; its return puts everything back."""
    spec = FleetSpec(replicas)
    table = {m: {} for m in sorted(members)}
    backwards = {m: {} for m in sorted(members, reverse=True)}
    for v in vassals:
        placed = place(v, spec, table)
        assert len(placed) == min(replicas, len(members)) == len(set(placed))
        assert placed == place(v, spec, backwards)
    gone = sorted(members)[0]
    survivors = {m: {} for m in members if m != gone}
    for v in vassals:
        before, after = place(v, spec, table), place(v, spec, survivors)
        if gone not in before:
            assert after == before  # untouched
        else:
            assert set(before) - {gone} <= set(after)  # the other copies stay where they were
        assert place(v, spec, {**survivors, gone: {}}) == before


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(["a.ini", "a.yaml", "a.yml", "a.json", "a.js", "a.xml", "a.conf"]),
       data=st.one_of(st.binary(max_size=300),
                      st.text(max_size=300).map(str.encode),
                      st.builds(lambda body: b"[fleet]\n" + body.encode(), st.text(max_size=200)),
                      st.builds(lambda body: b"fleet:\n  " + body.encode(), st.text(max_size=200)),
                      st.builds(lambda body: b'{"fleet": ' + body.encode() + b"}", st.text(max_size=200))))
def test_fuzz_fleet_sections(name: str, data: bytes) -> None:
    """Whatever a znode holds, reading its placement gives a spec or BadSpec, nothing else."""
    try:
        spec = spec_from_config(name, data)
    except BadSpec:
        return
    assert spec.replicas is None or spec.replicas >= 1


def test_fleet_options_without_a_zoo_monitor_are_named_as_ignored() -> None:
    from emperor.settings import EmperorSettings

    lonely = EmperorSettings(monitors=["/etc/vassals"], fleet_member="web1", fleet_labels=["a=b"])
    assert [line.split()[1] for line in lonely.notices()] == ["emperor-fleet-member",
                                                             "emperor-fleet-labels"]
    assert EmperorSettings(monitors=["/etc/vassals"]).notices() == []
    fleet = EmperorSettings(monitors=["zoo://zk/web"], fleet_member="web1", fleet_labels=["a"])
    assert fleet.notices() == []


# --- member nodes: their data, and placement over what can be read -------------------------------

label_words = st.from_regex(r"[A-Za-z0-9._/-]{1,20}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(labels=st.dictionaries(label_words, st.one_of(st.just(""), label_words), max_size=8),
       runs=st.lists(st.text(max_size=30), max_size=20),
       since=st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_member_data_round_trip(labels: dict[str, str], runs: list[str], since: float) -> None:
    info = zoo_member.decode(zoo_member.encode(labels, runs, since))
    assert info.error is None
    assert info.labels == labels and info.runs == sorted(runs) and info.since == since
    assert (info.host, info.pid, info.boot) == (socket.gethostname(), os.getpid(), zoo_member.boot_id())


def test_member_data_too_long_drops_the_runs_list() -> None:
    runs = [f"vassal-{i:06d}.ini" for i in range(40_000)]
    data = zoo_member.encode({"zone": "eu"}, runs, 1.0)
    assert len(data) <= zoo_member.MAX_DATA
    info = zoo_member.decode(data)
    assert info.error is None and info.labels == {"zone": "eu"} and info.runs is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


@pytest.mark.parametrize("data", [
    b"", b"\xff\xfe", b"not json", b"[]", b"null", b"42", b"1" * 5000,  # 5000 digits: int() refuses
    b'{"labels": []}', b'{"labels": {"zone": 1}}', b"[" * 100_000 + b"]" * 100_000,
])
def test_unreadable_member_data_is_an_error_not_an_exception(data: bytes) -> None:
    assert zoo_member.decode(data).error


@pytest.mark.parametrize("doc", [
    {"since": 10 ** 400}, {"pid": True}, {"pid": 10 ** 30}, {"pid": -5}, {"since": True},
    {"host": ["h"], "boot": {"b": 1}}, {"runs": [1, 2]}, {"since": float("inf")},
])
def test_odd_fields_of_a_member_are_defaults(doc: dict) -> None:
    info = zoo_member.decode(json.dumps(doc).encode())
    assert info.error is None and 0 <= info.pid < 2 ** 31 and isinstance(info.since, float)
    assert isinstance(info.host, str) and isinstance(info.boot, str)
    assert not zoo_member.left_by_dead_local_emperor(info)  # and no os.kill() of a bad pid


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode()),
                      st.dictionaries(st.sampled_from(["labels", "host", "pid", "boot", "since", "runs"]),
                                      json_values, max_size=6).map(lambda d: json.dumps(d).encode())))
def test_member_data_never_raises(data: bytes) -> None:
    info = zoo_member.decode(data)
    assert info.error is not None or all(isinstance(k, str) and isinstance(v, str)
                                         for k, v in info.labels.items())


@settings(max_examples=200, deadline=None)
@given(good=st.sets(names, min_size=1, max_size=6), bad=st.sets(names, max_size=4),
       vassals=st.sets(names, min_size=1, max_size=8), replicas=st.integers(1, 5),
       garbage=st.sampled_from([b"", b"{", b"[1]", b'{"labels": {"a": 1}}', b"1" * 5000]))
def test_placement_leaves_unreadable_members_out(good: set[str], bad: set[str], vassals: set[str],
                                                  replicas: int, garbage: bytes) -> None:
    """A member node with garbage data never gets a vassal; the others place as without it."""
    bad -= good
    data = {m: zoo_member.encode({}, [], 0.0) for m in good} | {m: garbage for m in bad}
    members = {m: zoo_member.decode(d) for m, d in data.items()}
    table = zoo_member.placement_members(members)
    assert set(table) == good
    for v in vassals:
        placed = place(v, FleetSpec(replicas), table)
        assert not set(placed) & bad
        assert placed == place(v, FleetSpec(replicas), {m: {} for m in good})
