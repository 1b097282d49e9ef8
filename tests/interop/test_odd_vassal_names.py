"""A vassal whose config file name is not UTF-8, under a real uWSGI emperor and under ours.

uWSGI handles names as bytes (core/emperor.c): it starts the vassal, whose instance opens
the file by those bytes. We do the same, with either instance (ours or uWSGI's) as the
vassal: the twin of tests/integration/test_monitor_odd_names.py at the vassal level.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import IMPERIUM, UWSGI_CORE, Procs, free_port, wait_until
from tests.interop.helpers import copy_app, need_uwsgi, status_of


def _uwsgi_launcher(where: Path) -> Path:
    path = where / "uwsgi-vassal"
    path.write_text(f'#!/bin/sh\nexec {UWSGI_CORE} --plugin python3 "$@"\n')
    path.chmod(0o755)
    return path


@pytest.mark.parametrize(("emperor", "vassal"), [("imperium", "imperium"),
                                                 ("imperium", "uwsgi"), ("uwsgi", "uwsgi")])
def test_a_vassal_named_by_bytes_serves(procs: Procs, tmp_path: Path, emperor: str,
                                        vassal: str) -> None:
    if "uwsgi" in (emperor, vassal):
        need_uwsgi()
    vassals = tmp_path / "vassals"
    copy_app("hello.py", vassals)
    port = free_port()
    with open(os.fsencode(vassals) + b"/\xff app.ini", "w") as f:
        f.write(f"[uwsgi]\nhttp-socket = 127.0.0.1:{port}\nwsgi-file = hello.py\n"
                "master = true\nprocesses = 1\n")
    binary = str(_uwsgi_launcher(tmp_path)) if vassal == "uwsgi" else IMPERIUM
    command = IMPERIUM if emperor == "imperium" else UWSGI_CORE
    p = procs.start([command, "--emperor", str(vassals), "--binary-path", binary,
                     "--emperor-freq", "1"], cwd=tmp_path)
    wait_until(lambda: status_of(port) == 200 or p.poll() is not None, 20,
               message=f"the vassal serving; log:\n{procs.output(p)[-3000:]}")
    assert p.poll() is None, procs.output(p)[-3000:]
    os.unlink(os.fsencode(vassals) + b"/\xff app.ini")
    wait_until(lambda: status_of(port) is None, 15, message="the vassal stopped with its file")
