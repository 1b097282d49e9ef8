"""zoo:// against the real ZooKeeper on 127.0.0.1:2181: the monitor in-process, its events checked.

Each test has its own tree (tests/integration/zoo_tree.py). Fleet tests run several monitors
with different member names in one process: placement, a member leaving and coming back,
labels, a member name already taken, a session that expires.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterator

import pytest

from emperor.events import Available, Destroy, MonitorContext, Sync, Touch, Unavailable
from monitors import fleet
from tests.conftest import need_module, wait_until
from tests.integration.monitor_harness import (
    MonitorRun,
    monitors_fixture,  # noqa: F401  (fixture)
)
from tests.integration.zoo_tree import HOSTS, SESSION_TIMEOUT, CutProxy, Tree, zk_tree

need_module("kazoo")
from kazoo.client import KazooClient  # noqa: E402

from monitors.zoo import ZooMonitor  # noqa: E402
from monitors.zoo_status import fleet_status  # noqa: E402

pytestmark = pytest.mark.service("zookeeper")


@pytest.fixture
def tree() -> Iterator[Tree]:
    with zk_tree() as t:
        yield t


def ctx(member: str = "m1", labels: tuple[str, ...] = (), freq: float = 1.0) -> MonitorContext:
    return MonitorContext(freq=freq, fleet_member=member, fleet_labels=labels)


def running(run: MonitorRun) -> set[str]:
    """What the monitor last told its emperor to run (Touch/Destroy/Sync folded)."""
    names: set[str] = set()
    for e in run.all():
        if isinstance(e, Touch):
            names.add(e.name)
        elif isinstance(e, Destroy):
            names.discard(e.name)
        elif isinstance(e, Sync):
            names = set(e.names)
    return names


def start(monitors: Callable[..., MonitorRun], arg: str, member: str = "m1", **kw: object) -> MonitorRun:
    return monitors(ZooMonitor, arg, ctx(member, **kw))  # type: ignore[arg-type]


def test_znodes_added_changed_removed(tree: Tree, monitors) -> None:
    tree.put("a.ini", "[uwsgi]\n# a1\n")
    tree.put("b.yml", "uwsgi:\n  b: 1\n")
    tree.put("empty.ini", "")
    run = start(monitors, tree.arg())
    run.wait_sync({"a.ini", "b.yml", "empty.ini"})
    a1 = run.touches(name="a.ini")[-1]
    assert a1.config == b"[uwsgi]\n# a1\n"
    assert run.touches(name="empty.ini")[-1].config is None  # the file of that name
    stat = tree.client.exists(tree.node("a.ini"))
    assert a1.mtime == stat.mtime / 1000

    mark = run.mark()
    tree.put("a.ini", "[uwsgi]\n# a2\n")
    a2 = run.wait(lambda ev: [e for e in ev if isinstance(e, Touch) and e.name == "a.ini"], mark)[0]
    assert a2.config == b"[uwsgi]\n# a2\n" and a2.mtime > a1.mtime
    tree.put("a.ini", "[uwsgi]\n# a2\n")  # the same data written again is a write: a reload
    run.wait(lambda ev: len([e for e in ev if isinstance(e, Touch) and e.name == "a.ini"]) == 2, mark)

    mark = run.mark()
    tree.put("c.json", '{"uwsgi": {"c": 1}}')
    run.wait(lambda ev: any(isinstance(e, Touch) and e.name == "c.json" for e in ev), mark)
    tree.delete("b.yml")
    run.wait(lambda ev: Destroy("b.yml") in ev, mark)
    run.wait_sync({"a.ini", "c.json", "empty.ini"}, mark)
    assert not run.all(Unavailable)
    # what the member publishes for --fleet-status
    data, _ = tree.client.get(tree.path + ".members/m1")
    assert json.loads(data)["runs"] == ["a.ini", "c.json", "empty.ini"]


class DeafZoo(ZooMonitor):
    """A monitor whose vassal watches never fire: what a lost notification looks like."""

    def _on_children(self, event: object) -> None:
        pass

    def _on_data(self, event: object) -> None:
        pass


def test_the_emperor_freq_read_repairs_missed_watches(tree: Tree, monitors) -> None:
    """Watches are the fast path; the full read every emperor-freq seconds is the net."""
    tree.put("a.ini", "[uwsgi]\n# a1\n")
    tree.put("b.ini", "[uwsgi]\n")
    run = monitors(DeafZoo, tree.arg(), ctx("m1", freq=1.0))
    run.wait_sync({"a.ini", "b.ini"})
    scans = run.monitor.scans  # type: ignore[attr-defined]
    mark = run.mark()
    tree.put("c.ini", "[uwsgi]\n")
    tree.put("a.ini", "[uwsgi]\n# a2\n")
    tree.delete("b.ini")
    run.wait_sync({"a.ini", "c.ini"}, mark, timeout=10)
    assert run.monitor.scans > scans  # type: ignore[attr-defined]  # seen by a full read
    assert run.touches(mark, name="a.ini")[-1].config == b"[uwsgi]\n# a2\n"
    assert Destroy("b.ini") in run.since(mark)


def test_bad_znodes_are_skipped_and_the_others_go_through(tree: Tree, monitors) -> None:
    tree.put("good.ini", "[uwsgi]\n")
    tree.put("noextension", "[uwsgi]\n")
    tree.put("huge.ini", b"[uwsgi]\n" + b"#" * 70_000)
    tree.put("placement.ini", "[uwsgi]\n[fleet]\nreplicas = many\n")
    tree.put("broken.json", '{"uwsgi": {')
    tree.put("binary.ini", b"\xff\xfe\x00\x01[uwsgi]\n")  # not text, but no fleet section: the vassal's business
    run = start(monitors, tree.arg())
    run.wait_sync({"good.ini", "binary.ini"})
    log = run.logs.text()
    assert "skipping znode noextension: not a valid vassal name" in log
    assert "skipping znode huge.ini: its config is 70008 bytes, more than the 65535" in log
    assert "skipping znode placement.ini: replicas 'many' is not a positive number" in log
    assert "skipping znode broken.json: malformed json at line 1" in log
    # a running vassal whose znode turns bad keeps running (unreadable is not gone)
    mark = run.mark()
    tree.put("good.ini", "[uwsgi]\n[fleet]\nreplicas = 0\n")
    wait_until(lambda: "skipping znode good.ini: replicas '0'" in run.logs.text(), message="warning")
    run.wait_sync({"good.ini", "binary.ini"}, mark)
    assert not [e for e in run.since(mark) if isinstance(e, Destroy | Touch)]
    # and is reloaded once it is good again
    tree.put("good.ini", "[uwsgi]\n# fixed\n")
    run.wait(lambda ev: any(isinstance(e, Touch) and e.config == b"[uwsgi]\n# fixed\n" for e in ev), mark)
    assert "znode good.ini is usable again" in run.logs.text()
    # warnings are not repeated on every full read
    assert run.logs.text().count("skipping znode huge.ini") == 1
    assert not run.all(Unavailable)


def test_path_that_does_not_exist_yet(tree: Tree, monitors) -> None:
    run = start(monitors, tree.arg())
    unavailable = run.wait(lambda ev: [e for e in ev if isinstance(e, Unavailable)])[0]
    assert "does not exist (yet)" in unavailable.reason
    assert not run.all(Sync) and not run.all(Touch)
    mark = run.mark()
    tree.put("a.ini", "[uwsgi]\n")  # creates the path too
    run.wait(lambda ev: Available() in ev and any(isinstance(e, Touch) for e in ev), mark)
    run.wait_sync({"a.ini"}, mark)


def test_credentials(monitors) -> None:
    with zk_tree(auth=("ops", "right")) as tree:
        acl = tree.acl("ops", "right")
        tree.client.create(tree.path, b"", acl=acl, makepath=True)
        tree.put("a.ini", "[uwsgi]\n", acl=acl)
        good = start(monitors, tree.arg(creds=tree.creds("ops", "right")), member="good")
        wrong = start(monitors, tree.arg(creds=tree.creds("ops", "wrong")), member="wrong")
        anonymous = start(monitors, tree.arg(), member="anonymous")
        good.wait_sync({"a.ini"})
        for run in (wrong, anonymous):
            event = run.wait(lambda ev: [e for e in ev if isinstance(e, Unavailable)])[0]
            assert "refuses access" in event.reason and "wrong or missing credentials" in event.reason
            assert ":wrong@" not in event.reason + run.logs.text() + run.monitor.id
            assert not run.all(Touch) and not run.all(Sync)
        # the one that reads fine is not disturbed by the others' failures
        assert not good.all(Unavailable)
        # a znode the good identity may not read is skipped; the others are still used
        mark = good.mark()
        tree.put("theirs.ini", "[uwsgi]\n", acl=tree.acl("other", "x"))
        tree.put("b.ini", "[uwsgi]\n", acl=acl)
        good.wait_sync({"a.ini", "b.ini"}, mark)
        assert "skipping znode theirs.ini: ZooKeeper refuses to read it" in good.logs.text()
        for run in (good, wrong, anonymous):  # before the tree goes, or they would rejoin it
            run.stop()


def test_chroot(tree: Tree, monitors) -> None:
    tree.put("a.ini", "[uwsgi]\n")
    run = start(monitors, tree.arg(path="/vassals", chroot=tree.base))
    run.wait_sync({"a.ini"})
    assert tree.members() == ["m1"]  # members live inside the chroot as well


def test_fleet_places_each_vassal_on_its_replicas(tree: Tree, monitors) -> None:
    names = [f"v{i}.ini" for i in range(8)]
    for name in names:
        tree.put(name, "[uwsgi]\n[fleet]\nreplicas = 2\n")
    tree.put("everywhere.ini", "[uwsgi]\n")
    runs = {m: start(monitors, tree.arg(), member=m) for m in ("a", "b", "c")}
    table: dict[str, dict[str, str]] = {m: {} for m in runs}

    def expected(members: dict[str, dict[str, str]]) -> dict[str, set[str]]:
        return {m: {n for n in names if m in fleet.place(n, fleet.FleetSpec(2), members)}
                | {"everywhere.ini"} for m in members}

    def settled(members: dict[str, dict[str, str]]) -> bool:
        want = expected(members)
        return all(running(runs[m]) == want[m] for m in members)

    wait_until(lambda: settled(table), message=f"placement on a, b, c: {[running(r) for r in runs.values()]}")
    for name in names:
        assert sum(name in running(r) for r in runs.values()) == 2

    # b leaves (its session closed): a and c take its vassals over, nothing else moves
    before = {m: running(runs[m]) for m in ("a", "c")}
    runs["b"].stop()
    survivors = {"a": {}, "c": {}}
    wait_until(lambda: settled(survivors), message="b's vassals moved to a and c")
    for m in ("a", "c"):
        assert before[m] <= running(runs[m]), "a survivor stopped something it ran"
    assert all(sum(n in running(runs[m]) for m in ("a", "c")) == 2 for n in names)

    # b comes back: the vassals move back, the extra copies stop
    runs["b"] = start(monitors, tree.arg(), member="b")
    wait_until(lambda: settled(table), message="placement back on a, b, c")
    for name in names:
        assert sum(name in running(r) for r in runs.values()) == 2

    out = io.StringIO()
    assert fleet_status(tree.arg(), out=out) == 0
    text = out.getvalue()
    assert "members (3):" in text and "vassals (9):" in text and "*" not in text
    for name in names:
        row = next(line for line in text.splitlines() if line.strip().startswith(name))
        placed = ", ".join(sorted(fleet.place(name, fleet.FleetSpec(2), table)))
        assert row.split()[1] == "2" and row.count(placed) == 2  # placed on = reported by


def test_labels_choose_members(tree: Tree, monitors) -> None:
    tree.put("eu.ini", "[uwsgi]\n[fleet]\nlabels = zone=eu\n")
    tree.put("fast.yaml", "uwsgi:\n  master: 1\nfleet:\n  replicas: 1\n  labels: [ssd, '!spot']\n")
    tree.put("nowhere.json", '{"uwsgi": {}, "fleet": {"labels": "gpu"}}')
    a = start(monitors, tree.arg(), member="a", labels=("zone=eu", "ssd"))
    b = start(monitors, tree.arg(), member="b", labels=("zone=eu,spot,ssd",))
    c = start(monitors, tree.arg(), member="c", labels=("zone=us",))
    wait_until(lambda: running(a) == {"eu.ini", "fast.yaml"} and running(b) == {"eu.ini"}
               and c.all(Sync) and running(c) == set(),
               message=f"label placement: {running(a)} {running(b)} {running(c)}")


def test_member_name_held_by_another_emperor(tree: Tree, monitors) -> None:
    tree.put("a.ini", "[uwsgi]\n")
    first = start(monitors, tree.arg(), member="same")
    first.wait_sync({"a.ini"})
    second = start(monitors, tree.arg(), member="same")
    event = second.wait(lambda ev: [e for e in ev if isinstance(e, Unavailable)])[0]
    assert "fleet member name 'same' is held by another emperor" in event.reason
    assert not second.all(Touch) and not second.all(Sync)
    first.stop()  # its session closes, its node goes: the second one joins at once
    second.wait_sync({"a.ini"}, timeout=10)


def test_a_persistent_node_under_members_is_no_member(tree: Tree, monitors) -> None:
    """A node nobody's session holds (made by hand, or restored from a backup, which turns
    ephemeral nodes persistent) would be a member that never dies and runs nothing: the
    vassals placed on it would run nowhere, for ever. It is ignored, with a warning."""
    name = next(n for n in (f"g{i}.ini" for i in range(100))
                if fleet.place(n, fleet.FleetSpec(1), {"m1": {}, "ghost": {}}) == ["ghost"])
    tree.put(name, "[uwsgi]\n[fleet]\nreplicas = 1\n")
    tree.client.create(tree.path + ".members/ghost", b'{"labels": {}}', makepath=True)
    run = start(monitors, tree.arg())
    run.wait_sync({name})
    wait_until(lambda: f"ignoring {tree.path}.members/ghost: not an ephemeral node" in run.logs.text(),
               message="the warning")
    out = io.StringIO()
    assert fleet_status(tree.arg(), out=out) == 0
    assert "members (1):" in out.getvalue() and "ghost  (not an ephemeral node" in out.getvalue()
    row = next(line for line in out.getvalue().splitlines() if line.strip().startswith(name))
    assert row.split()[2:] == ["m1", "m1"], out.getvalue()  # placed on m1, reported by m1
    # our own name taken by such a node: a clear reason, not "held by another emperor"
    tree.client.create(tree.path + ".members/m2", b"", makepath=True)
    other = start(monitors, tree.arg(), member="m2")
    event = other.wait(lambda ev: [e for e in ev if isinstance(e, Unavailable)])[0]
    assert f"the member node {tree.path}.members/m2 is not ephemeral" in event.reason
    assert not other.all(Touch) and not other.all(Sync)


@pytest.mark.parametrize("garbage", [b"not json", b"1" * 5000, b'{"labels": {"zone": 7}}'])
def test_a_member_node_with_garbage_data_is_left_out_of_placement(tree: Tree, monitors,
                                                                   garbage: bytes) -> None:
    """A live (ephemeral) member node whose data cannot be read gets no vassal: what would be
    placed on it runs on the readable members, and the monitor goes on."""
    name = next(n for n in (f"j{i}.ini" for i in range(100))
                if fleet.place(n, fleet.FleetSpec(1), {"m1": {}, "junk": {}}) == ["junk"])
    tree.put(name, "[uwsgi]\n[fleet]\nreplicas = 1\n")
    tree.put("other.ini", "[uwsgi]\n")
    tree.client.create(tree.path + ".members/junk", garbage, ephemeral=True, makepath=True)
    run = start(monitors, tree.arg())
    run.wait_sync({name, "other.ini"})
    wait_until(lambda: "fleet member junk: " in run.logs.text() and "left out of placement" in run.logs.text(),
               message=f"the warning: {run.logs.text()[-2000:]}")
    out = io.StringIO()
    assert fleet_status(tree.arg(), out=out) == 0
    assert "members (2):" in out.getvalue() and "left out of placement)" in out.getvalue()
    row = next(line for line in out.getvalue().splitlines() if line.strip().startswith(name))
    assert row.split()[2:] == ["m1", "m1"], out.getvalue()  # placed on m1, reported by m1
    tree.put("later.ini", "[uwsgi]\n")  # and the monitor still follows the tree
    wait_until(lambda: running(run) == {name, "other.ini", "later.ini"}, 20, message="later.ini")


def test_a_read_made_while_reconnecting_gives_up_within_the_session_timeout(tree: Tree) -> None:
    """kazoo holds a request made while it reconnects until it is connected again. The
    monitor's reads give up within the session timeout instead (then its loop reports the
    outage); before, one made in that window held the monitor, and its outage report, for as
    long as the network stayed cut."""
    from kazoo.handlers.threading import KazooTimeoutError

    proxy = CutProxy()
    mon = ZooMonitor(tree.arg(hosts=proxy.hosts), lambda m, e: None, ctx("m1"))
    client = mon.source.client(mon.kazoo_log)
    outcome: list[object] = []

    def read() -> None:
        try:
            mon._read_members(client, full=True)
            outcome.append("answered")
        except Exception as exc:  # noqa: BLE001 - what it raised is the point
            outcome.append(exc)

    try:
        client.start(timeout=15)
        proxy.cut()
        wait_until(lambda: not client.connected, 15, message="the client to see the cut")
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(SESSION_TIMEOUT + 15)  # a deadline: the answer is due after one session timeout
        assert outcome and isinstance(outcome[0], KazooTimeoutError), outcome
    finally:
        proxy.heal()  # a request still queued is answered now: the reader ends either way
        client.stop()
        client.close()
        proxy.close()


def test_expired_session_rejoins_without_stopping_anything(tree: Tree, monitors) -> None:
    tree.put("a.ini", "[uwsgi]\n")
    run = start(monitors, tree.arg())
    run.wait_sync({"a.ini"})
    old = tree.client.exists(tree.path + ".members/m1").ephemeralOwner
    # the classic way to expire a session: another client takes it over and closes it
    client = run.monitor.client  # type: ignore[attr-defined]
    thief = KazooClient(HOSTS, client_id=client.client_id)
    thief.start(timeout=10)
    thief.stop()
    thief.close()
    mark = run.mark()

    def rejoined() -> bool:
        stat = tree.client.exists(tree.path + ".members/m1")
        return stat is not None and stat.ephemeralOwner != old

    wait_until(rejoined, timeout=20, message="the member node created again by a new session")
    run.wait_sync({"a.ini"}, mark)
    assert not [e for e in run.since(mark) if isinstance(e, Destroy)]
    mark = run.mark()
    tree.put("b.ini", "[uwsgi]\n")  # and the new session's watches work
    run.wait(lambda ev: any(isinstance(e, Touch) and e.name == "b.ini" for e in ev), mark)


def test_fleet_status_of_a_missing_tree_and_a_dead_server(tree: Tree) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert fleet_status(tree.arg(), out=out, err=err) == 0
    assert "members (0):" in out.getvalue() and "does not exist" in out.getvalue()
    from tests.conftest import free_port

    assert fleet_status(f"zoo://127.0.0.1:{free_port()}/x", out=out, err=err) == 1
    assert "cannot connect to ZooKeeper" in err.getvalue()
    assert fleet_status("zoo://h/x?nope=1", out=out, err=err) == 1
    assert "unknown parameter 'nope'" in err.getvalue()


def test_restarted_emperor_takes_over_the_node_of_its_dead_predecessor(tree: Tree, monitors) -> None:
    """An emperor killed and restarted on the same machine need not wait for its old session
    to expire: a node whose writer (same host, same boot) is certainly dead is taken over. A
    node whose pid lives is not: that may be another emperor using the same name."""
    import subprocess

    from monitors import zoo_member

    tree.put("a.ini", "[uwsgi]\n")
    ghost = KazooClient(HOSTS, timeout=30)  # the dead emperor's session, still open
    ghost.start(timeout=10)
    try:
        dead = subprocess.Popen(["true"])
        dead.wait()
        data = json.loads(zoo_member.encode({}, ["a.ini"], 0.0))
        data["pid"] = dead.pid
        ghost.create(tree.path + ".members/m1", json.dumps(data).encode(), ephemeral=True,
                     makepath=True)
        run = start(monitors, tree.arg())
        run.wait_sync({"a.ini"})
        assert "was left by a dead emperor of this machine" in run.logs.text()
        owner = tree.client.exists(tree.path + ".members/m1").ephemeralOwner
        assert owner != ghost.client_id[0]

        alive = subprocess.Popen(["sleep", "60"])
        try:
            data["pid"] = alive.pid
            ghost.create(tree.path + ".members/m2", json.dumps(data).encode(), ephemeral=True)
            other = start(monitors, tree.arg(), member="m2")
            event = other.wait(lambda ev: [e for e in ev if isinstance(e, Unavailable)])[0]
            assert f"held by another emperor ({data['host']} pid {alive.pid})" in event.reason
        finally:
            alive.kill()
            alive.wait()
    finally:
        ghost.stop()
        ghost.close()
