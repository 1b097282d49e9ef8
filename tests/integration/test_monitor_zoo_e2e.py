"""zoo:// end to end: real emperor processes, the real ZooKeeper, fake vassals with journals.

One emperor: znodes spawn, reload and stop vassals; bad znodes and wrong credentials are
contained; a ZooKeeper outage of 20 s stops nothing and what changed meanwhile is applied.
A fleet of three: each vassal runs on exactly its two placed members; SIGKILL of one emperor
moves its vassals to the survivors within the session timeout plus a spawn; when it returns,
they move back and no third copy stays; a clean stop hands over at once; a partitioned
emperor is replaced, then settles back without restarting its copy.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitors import fleet
from tests.conftest import IMPERIUM, pid_alive, wait_until
from tests.integration.monitor_e2e import Emperor, digest, need_emperor
from tests.integration.zoo_tree import SESSION_TIMEOUT, CutProxy, Tree, zk_ctl, zk_ready, zk_tree

pytestmark = pytest.mark.service("zookeeper")

#: ZooKeeper expires a session between its timeout and one tick (2 s here) later
EXPIRY_BOUND = SESSION_TIMEOUT + 2
#: "a spawn" of the failover bound: a watch, the fork of a fake vassal and its journal line,
#: with room for a loaded 2-core box (measured: well under a second when quiet)
SPAWN_BOUND = 6


@pytest.fixture
def tree() -> Iterator[Tree]:
    need_emperor()
    with zk_tree() as t:
        yield t


def emperor(procs, tmp_path: Path, tree: Tree, member: str, *extra: str, arg: str | None = None,
            home: str | None = None) -> Emperor:
    where = tmp_path / (home or member)
    where.mkdir(parents=True, exist_ok=True)
    return Emperor(procs, where, arg or tree.arg(), "--emperor-fleet-member", member, *extra, freq=1)


def test_znodes_spawn_reload_and_stop_vassals(tree: Tree, procs, tmp_path: Path) -> None:
    tree.put("a.ini", "[uwsgi]\n# a1\n")
    tree.put("b.yml", "uwsgi:\n  b: 1\n")
    emp = emperor(procs, tmp_path, tree, "solo")
    a = emp.wait_line("a.ini", "start", "[uwsgi]\n# a1\n")
    b = emp.wait_line("b.yml", "start", "uwsgi:\n  b: 1\n")

    tree.put("a.ini", "[uwsgi]\n# a2\n")  # a write → a reload with the new config, same process
    assert emp.wait_line("a.ini", "reload", "[uwsgi]\n# a2\n").pid == a.pid
    tree.put("c.json", '{"uwsgi": {"c": 1}}')  # a new znode → a new vassal
    emp.wait_line("c.json", "start", '{"uwsgi": {"c": 1}}')
    tree.delete("a.ini")  # a deleted znode → stopped
    emp.wait_line("a.ini", "stop")
    wait_until(lambda: not pid_alive(a.pid), message="the removed vassal's process gone")
    assert [line.what for line in emp.lines("b.yml")] == ["start"] and pid_alive(b.pid)


def test_bad_znodes_and_wrong_credentials_are_contained(tree: Tree, procs, tmp_path: Path) -> None:
    tree.put("good.ini", "[uwsgi]\n")
    tree.put("huge.ini", b"[uwsgi]\n" + b"#" * 200_000)
    tree.put("broken.json", '{"uwsgi": ')
    tree.put("placement.yaml", "uwsgi:\n  a: 1\nfleet:\n  replicas: lots\n")
    emp = emperor(procs, tmp_path, tree, "solo")
    emp.wait_line("good.ini", "start")
    wait_until(lambda: all(f"skipping znode {n}" in emp.log()
                           for n in ("huge.ini", "broken.json", "placement.yaml")),
               message=f"the bad znodes named in the log: {emp.log()[-2000:]}")
    tree.put("later.ini", "[uwsgi]\n")  # a good znode after the bad ones still goes through
    emp.wait_line("later.ini", "start")
    for name in ("huge.ini", "broken.json", "placement.yaml"):
        assert not emp.lines(name)
    # an emperor with wrong credentials on a protected path: a clear error, and it lives on
    secret = f"{tree.base}/secret"
    tree.client.create(secret, b"", acl=tree.acl("ops", "right"))
    locked = emperor(procs, tmp_path, tree, "locked",
                     arg=tree.arg(path=secret, creds=tree.creds("ops", "wrong")))
    wait_until(lambda: "wrong or missing credentials" in locked.log(), message=locked.log()[-1500:])
    assert "ops:wrong" not in locked.log()
    locked.check_alive()
    emp.check_alive()
    assert [line.what for line in emp.lines("good.ini")] == ["start"]


def test_zookeeper_outage_stops_nothing_and_loses_nothing(procs, tmp_path: Path) -> None:
    need_emperor()
    with zk_tree(exclusive=True) as tree:
        tree.put("a.ini", "[uwsgi]\n# a1\n")
        tree.put("c.ini", "[uwsgi]\n# c1\n")
        emp = emperor(procs, tmp_path, tree, "solo")
        a = emp.wait_line("a.ini", "start")
        c = emp.wait_line("c.ini", "start")
        zk_ctl("stop")
        try:
            wait_until(lambda: "unavailable" in emp.log(), timeout=20,
                       message=f"the emperor noticed the outage: {emp.log()[-1500:]}")
            # 20 s without ZooKeeper (longer than the session timeout): nothing moves
            down_until = time.monotonic() + 20
            while time.monotonic() < down_until:
                for name, line in (("a.ini", a), ("c.ini", c)):
                    assert emp.running(name) == line.pid, f"{name} disturbed during the outage"
                    assert [x.what for x in emp.lines(name)] == ["start"]
                emp.check_alive()
                time.sleep(0.5)  # the sampling rate of a check that nothing happens, not a wait
            # hold the emperor still while the server comes back and the tree changes, so
            # that it cannot have watched these changes happen: only its resync can see them
            os.kill(emp.proc.pid, signal.SIGSTOP)
            try:
                zk_ctl("start")
                wait_until(zk_ready, timeout=60, message="ZooKeeper back")
                wait_until(lambda: tree.client.connected, timeout=30, message="test client back")
                tree.put("a.ini", "[uwsgi]\n# a2\n")
                tree.delete("c.ini")
                tree.put("d.ini", "[uwsgi]\n# d1\n")
            finally:
                os.kill(emp.proc.pid, signal.SIGCONT)
        finally:
            if not zk_ready():
                zk_ctl("start")
                wait_until(zk_ready, timeout=60, message="ZooKeeper back")
        emp.wait_line("a.ini", "reload", "[uwsgi]\n# a2\n", timeout=30)
        emp.wait_line("c.ini", "stop", timeout=30)
        emp.wait_line("d.ini", "start", "[uwsgi]\n# d1\n", timeout=30)
        assert emp.running("a.ini") == a.pid
        assert digest("[uwsgi]\n# a2\n") == emp.lines("a.ini")[-1].digest
        # a session that expired while ZooKeeper was down is replaced first: then it joins again
        wait_until(lambda: tree.members() == ["solo"], 30, message="the emperor a member again")
        procs.kill_all()  # before the tree goes, or it would rejoin it


def _placement(names: list[str], members: str) -> dict[str, set[str]]:
    table = {m: {} for m in members}
    return {n: set(fleet.place(n, fleet.FleetSpec(2), table)) for n in names}


def test_fleet_of_three_replicas_failover_and_return(tree: Tree, procs, tmp_path: Path) -> None:
    names = [f"v{i}.ini" for i in range(6)]
    for name in names:
        tree.put(name, "[uwsgi]\n[fleet]\nreplicas = 2\n")
    emps = {m: emperor(procs, tmp_path, tree, m) for m in "abc"}

    def where(name: str) -> set[str]:
        return {m for m, e in emps.items() if e.running(name)}

    def settled(members: str) -> bool:
        want = _placement(names, members)
        return all(where(n) == want[n] for n in names)

    wait_until(lambda: settled("abc"), timeout=30,
               message=f"each vassal on its two members: {({n: where(n) for n in names})}")
    assert all(len(where(n)) == 2 for n in names)

    # SIGKILL of a: its vassals die with it; b and c start them once its session expires
    victim = emps.pop("a")
    moved = [n for n in names if "a" in _placement(names, "abc")[n]]
    assert moved, "a ran nothing: pick other vassal names"
    os.kill(victim.proc.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    victim.proc.wait(timeout=10)
    # the bound: the session timeout (+ the tick ZooKeeper expires it on) plus a spawn
    wait_until(lambda: settled("bc"), timeout=EXPIRY_BOUND + SPAWN_BOUND,
               message=f"a's vassals on b and c within the session timeout plus a spawn: "
                       f"{({n: where(n) for n in names})}")
    took = time.monotonic() - killed_at
    assert all(len(where(n)) == 2 for n in names)
    print(f"failover of {len(moved)} vassals took {took:.1f}s (session timeout {SESSION_TIMEOUT}s)")

    # a returns (a new process, same member name): its vassals move back, the extra copies stop.
    # The bound (docs/fleet.md): a stand-in copy is asked to stop when its emperor sees a's
    # node (a watch; at worst the next emperor-freq read) and is gone when the vassal has
    # stopped; the fake vassals stop at once, so all is settled within emperor-freq plus a spawn
    emps["a"] = emperor(procs, tmp_path, tree, "a", home="a-again")
    wait_until(lambda: "a" in tree.members(), timeout=30, message="a a member again")
    joined_at = time.monotonic()
    most = {n: 0 for n in names}

    def back() -> bool:
        for n in names:
            most[n] = max(most[n], len(where(n)))
        return settled("abc")

    wait_until(back, timeout=1 + 10, message=f"placement back on a, b, c within emperor-freq and a "
                                            f"spawn: {({n: where(n) for n in names})}")
    print(f"settled {time.monotonic() - joined_at:.2f}s after a rejoined; most copies seen: {most}")
    for name in moved:
        survivors = _placement(names, "bc")[name] - _placement(names, "abc")[name]
        for m in survivors:  # the copy that stood in for a's is stopped, not just unplaced
            assert emps[m].lines(name)[-1].what == "stop"
    assert all(len(where(n)) == 2 for n in names)

    # the cluster view agrees
    out = subprocess.run([IMPERIUM, "--fleet-status", tree.arg()], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert "members (3):" in out.stdout and "vassals (6):" in out.stdout, out.stdout
    for name in names:
        row = next(line for line in out.stdout.splitlines() if line.strip().startswith(name))
        placed = ", ".join(sorted(_placement(names, "abc")[name]))
        assert row.count(placed) == 2, out.stdout  # placed on, and reported by, the same two


def test_clean_stop_hands_over_at_once(tree: Tree, procs, tmp_path: Path) -> None:
    """SIGTERM: the monitor closes its session before the emperor is gone, so the other member
    starts the vassal without waiting for a session to expire."""
    name = "single.ini"
    tree.put(name, "[uwsgi]\n[fleet]\nreplicas = 1\n")
    emps = {m: emperor(procs, tmp_path, tree, m) for m in "ab"}
    owner = fleet.place(name, fleet.FleetSpec(1), {"a": {}, "b": {}})[0]
    other = "b" if owner == "a" else "a"
    emps[owner].wait_line(name, "start")
    wait_until(lambda: tree.members() == ["a", "b"], message="both members")
    emps[owner].proc.send_signal(signal.SIGTERM)
    # the node goes with the closed session, well before the session timeout could expire it
    wait_until(lambda: tree.members() == [other], timeout=SESSION_TIMEOUT - 1,
               message="the stopping emperor's member node gone")
    emps[other].wait_line(name, "start", timeout=10)
    emps[owner].proc.wait(timeout=30)
    assert emps[owner].lines(name)[-1].what == "stop"



def test_partitioned_emperor_is_replaced_then_settles_back(tree: Tree, procs, tmp_path: Path) -> None:
    """a is cut off from ZooKeeper longer than its session: b starts a's vassal; a, which cannot
    tell a partition from an outage, keeps its copy (two copies while the partition lasts, as
    docs/fleet.md says). Healed, a joins again under a new session, keeps its copy running,
    and b's stand-in stops."""
    proxy = CutProxy()
    try:
        # a vassal that a wins over b, so that it moves back to a when the partition heals
        name = next(n for n in (f"p{i}.ini" for i in range(100))
                    if fleet.place(n, fleet.FleetSpec(1), {"a": {}, "b": {}}) == ["a"])
        tree.put(name, "[uwsgi]\n[fleet]\nreplicas = 1\n")
        a = emperor(procs, tmp_path, tree, "a", arg=tree.arg(hosts=proxy.hosts))
        b = emperor(procs, tmp_path, tree, "b")
        first = a.wait_line(name, "start")
        wait_until(lambda: tree.members() == ["a", "b"], message="both members")
        proxy.cut()
        b.wait_line(name, "start", timeout=EXPIRY_BOUND + 20)  # a's session expired: b stands in
        assert a.running(name) == first.pid, "the cut-off emperor stopped its copy"
        wait_until(lambda: "unavailable" in a.log(), message="a reports the outage")
        proxy.heal()
        b.wait_line(name, "stop", timeout=30)  # a is back: the stand-in goes
        wait_until(lambda: tree.members() == ["a", "b"], timeout=30, message="a a member again")
        assert a.running(name) == first.pid  # never restarted on a
        assert [line.what for line in a.lines(name)] == ["start"]
    finally:
        proxy.close()
