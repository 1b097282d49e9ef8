"""Property-based fuzzing of the dir:// and glob:// event stream against a real emperor.

Hypothesis draws sequences of create / touch / delete / rename (and a few traps: a directory
or a dangling symlink with a config name) over odd names: not UTF-8, spaces, newlines,
leading dashes, 254 and 255 bytes long, dotfiles, wrong extensions. After each sequence the
set of running vassals must equal what the directory holds by uWSGI's rules (a regular file,
a valid ending, fewer than 255 bytes; glob's wildcards skip dotfiles), and no traceback may
reach the emperor's log. One emperor serves every example of a test (each example starts
from where the last one left the directory, which the property does not care about), with
cheap protocol vassals (tests/fixtures/fake_vassal.py); examples are few and short, and
shrinking is off: a real emperor is slow to shrink against, and the failing sequence is
printed as it was.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.conftest import Procs, wait_until
from tests.integration.emperor_harness import Emperor

EXTENSIONS = (b".ini", b".xml", b".yml", b".yaml", b".js", b".json")
CONTENT = b"[uwsgi]\n"
SETTINGS = settings(max_examples=25, deadline=None, database=None, derandomize=False,
                    phases=(Phase.explicit, Phase.generate),
                    suppress_health_check=list(HealthCheck))

_stems = st.one_of(
    st.sampled_from([b"app", b"my app", b"-x", b"--ini", b".hidden", b"\xff\xfe", b"caf\xc3\xa9",
                     b"new\nline", b"tab\t", b"a" * 250, b"b" * 251, b"\x01ctl"]),
    st.binary(min_size=1, max_size=12).filter(lambda b: b"/" not in b and b"\0" not in b),
)
_suffixes = st.sampled_from([*EXTENSIONS, b".ini", b".skel", b".ini~", b"", b".INI"])
NAMES = st.builds(lambda stem, suffix: (stem + suffix)[-255:], _stems, _suffixes).filter(
    lambda b: b not in (b".", b".."))
OPS = st.lists(st.tuples(st.sampled_from(["create", "touch", "delete", "rename", "mkdir",
                                          "dangling"]), NAMES, NAMES), min_size=1, max_size=10)


def _valid(name: bytes) -> bool:
    """uwsgi_emperor_is_valid: a known ending and strlen() < 0xff."""
    return name.endswith(EXTENSIONS) and len(name) < 0xFF


def _regular(path: bytes) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _apply(directory: bytes, ops: list[tuple[str, bytes, bytes]]) -> None:
    """Do the operations; those the filesystem refuses (a name too long...) are no-ops."""
    for op, name, other in ops:
        path, dest = directory + b"/" + name, directory + b"/" + other
        try:
            if op == "create" or (op == "touch" and not os.path.lexists(path)):
                with open(path, "wb") as f:
                    f.write(CONTENT)
            elif op == "touch":
                st_ = os.lstat(path)
                os.utime(path, ns=(st_.st_atime_ns, st_.st_mtime_ns + 10**9),
                         follow_symlinks=False)
            elif op == "delete" and os.path.lexists(path):
                _remove(path)
            elif op == "rename" and os.path.lexists(path):
                if os.path.isdir(dest) and not os.path.islink(dest):
                    _remove(dest)
                os.rename(path, dest)
            elif op == "mkdir" and not os.path.lexists(path):
                os.mkdir(path)
            elif op == "dangling" and not os.path.lexists(path):
                os.symlink(b"/nonexistent/" + name, path)
        except OSError:
            pass  # e.g. ENAMETOOLONG: the sequence goes on


def _remove(path: bytes) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        os.rmdir(path)
    else:
        os.unlink(path)


def _running(e: Emperor) -> set[str]:
    return {v["id"] for v in e.stats()["vassals"] if v["pid"] > 0}


def _converges(e: Emperor, expected: Callable[[], set[str]], ops: object) -> None:
    def same() -> bool:
        return _running(e) == expected()
    wait_until(same, 20, interval=0.1,
               message=f"running == source after {ops!r}: running {sorted(_running(e))!r}, "
                       f"source {sorted(expected())!r}; log:\n{e.log()[-3000:]}")
    assert "Traceback" not in e.log(), e.log()[-3000:]


def test_dir_event_stream_fuzz(procs: Procs, tmp_path: Path) -> None:
    e = Emperor(procs, tmp_path)  # emperor-freq 1: inotify first, the rescan as a net
    directory = os.fsencode(e.dir)

    def expected() -> set[str]:
        return {os.fsdecode(n) for n in os.listdir(directory)
                if _valid(n) and _regular(directory + b"/" + n)}

    @SETTINGS
    @given(OPS)
    def run(ops: list[tuple[str, bytes, bytes]]) -> None:
        _apply(directory, ops)
        _converges(e, expected, ops)

    run()
    assert e.stop() == 0


def test_glob_event_stream_fuzz(procs: Procs, tmp_path: Path) -> None:
    root = tmp_path / "apps"
    subdirs = [b"a", b"\xff d", b"-x", b".dot"]  # a wildcard skips the dotted one
    for sub in subdirs:
        os.makedirs(os.fsencode(root) + b"/" + sub)
    e = Emperor(procs, tmp_path, monitors=[f"glob://{root}/*/*"])
    base = os.fsencode(root)

    def expected() -> set[str]:
        out = set()
        for sub in os.listdir(base):
            if sub.startswith(b"."):
                continue
            for n in os.listdir(base + b"/" + sub):
                full = base + b"/" + sub + b"/" + n
                if not n.startswith(b".") and _valid(full) and _regular(full):
                    out.add(os.fsdecode(full))
        return out

    @SETTINGS
    @given(st.sampled_from(subdirs), OPS)
    def run(sub: bytes, ops: list[tuple[str, bytes, bytes]]) -> None:
        _apply(base + b"/" + sub, ops)
        _converges(e, expected, (sub, ops))

    run()
    assert e.stop() == 0
