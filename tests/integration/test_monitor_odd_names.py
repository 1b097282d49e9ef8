"""dir:// and glob:// under a real emperor with names that are not UTF-8, or otherwise odd.

uWSGI handles vassal names as bytes (core/emperor.c): a valid ending and fewer than 255
bytes is all it asks, so it starts a vassal whose file name is not UTF-8. So do we; what
matters most is that such a name never stops the emperor from seeing the other vassals.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import Procs, wait_until
from tests.integration.emperor_harness import Emperor

ODD = b"\xff\xfe odd.ini"


def _running(e: Emperor) -> set[str]:
    return {v["id"] for v in e.stats()["vassals"] if v["pid"] > 0}


def _write(directory: Path, raw: bytes, text: str = "[uwsgi]\n") -> bytes:
    path = os.fsencode(directory) + b"/" + raw
    with open(path, "w") as f:
        f.write(text)
    return path


def test_dir_name_not_utf8_breaks_nothing_and_runs(procs: Procs, tmp_path: Path) -> None:
    """On main: every rescan failed, so a deleted vassal kept running and a new one never
    started (inotify and rescans alike died on the odd name)."""
    e = Emperor(procs, tmp_path)  # emperor-freq 1
    e.ini("gone.ini")
    e.wait_vassal("gone.ini", loyal=1)
    _write(e.dir, ODD)
    odd = os.fsdecode(ODD)
    wait_until(lambda: odd in _running(e), 10, message=f"the odd vassal; log:\n{e.log()[-3000:]}")
    (e.dir / "gone.ini").unlink()
    e.ini("zz-new.ini")  # sorts after the odd name in a listing
    wait_until(lambda: _running(e) == {odd, "zz-new.ini"}, 10,
               message=f"gone.ini stopped, zz-new.ini started; log:\n{e.log()[-3000:]}")
    # stats show it (JSON escapes the lone surrogate) and the log names it by its bytes
    assert e.vassal(odd) is not None
    os.unlink(os.fsencode(e.dir) + b"/" + ODD)
    wait_until(lambda: _running(e) == {"zz-new.ini"}, 10, message="the odd vassal stopped")
    assert "Traceback" not in e.log()
    assert e.stop() == 0


def test_glob_name_not_utf8_breaks_nothing(procs: Procs, tmp_path: Path) -> None:
    root = tmp_path / "apps"
    root.mkdir()
    (root / "a").mkdir()
    odd_dir = os.fsencode(root) + b"/\xff"
    os.mkdir(odd_dir)
    e = Emperor(procs, tmp_path, monitors=[f"glob://{root}/*/uwsgi.ini"])
    _write(odd_dir, b"uwsgi.ini")
    odd = os.fsdecode(odd_dir + b"/uwsgi.ini")
    e.ini("uwsgi.ini", directory=root / "a")
    wait_until(lambda: _running(e) == {odd, f"{root}/a/uwsgi.ini"}, 10,
               message=f"both glob vassals; log:\n{e.log()[-3000:]}")
    (root / "a" / "uwsgi.ini").unlink()
    wait_until(lambda: _running(e) == {odd}, 10, message="a/uwsgi.ini stopped")
    assert e.stop() == 0
