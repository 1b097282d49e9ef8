"""Tyrant mode's check of a config file (emperor.tyrant): one open, judged on what was opened."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from emperor import tyrant
from tests.conftest import need_root

NOBODY = 65534
DAEMON = 1  # uid and gid 1 on Debian


@pytest.fixture(autouse=True)
def _root() -> Iterator[None]:
    need_root("giving files to other users needs root")
    yield
    tyrant.after_check = None


def file_of(path: Path, uid: int, text: str = "[uwsgi]\n", mode: int = 0o644) -> Path:
    path.write_text(text)
    os.chown(path, uid, uid)
    path.chmod(mode)
    return path


def test_a_users_file_runs_as_that_user(tmp_path: Path) -> None:
    cfg = file_of(tmp_path / "app.ini", NOBODY, "[uwsgi]\nsocket = :1\n", 0o600)
    got = tyrant.read_config(str(cfg))
    assert (got.uid, got.gid, got.data) == (NOBODY, NOBODY, b"[uwsgi]\nsocket = :1\n")
    assert (got.dev, got.ino) == (cfg.stat().st_dev, cfg.stat().st_ino)
    # relative to a directory, as the dir monitor names it
    assert tyrant.read_config("app.ini", cwd=str(tmp_path)).data == got.data


def test_root_owned_config_and_its_symlink_are_refused(tmp_path: Path) -> None:
    root_cfg = file_of(tmp_path / "root.ini", 0)
    link = tmp_path / "link.ini"
    link.symlink_to(root_cfg)
    for path in (root_cfg, link):
        with pytest.raises(tyrant.Refused, match="uid and gid must not be 0"):
            tyrant.read_config(str(path))


def test_a_users_symlink_cannot_borrow_another_users_file(tmp_path: Path) -> None:
    victim = file_of(tmp_path / "victim.ini", DAEMON)
    link = tmp_path / "borrowed.ini"
    link.symlink_to(victim)
    os.chown(link, NOBODY, NOBODY, follow_symlinks=False)
    with pytest.raises(tyrant.Refused, match=f"symlink borrowed.ini belongs to uid {NOBODY}"):
        tyrant.read_config(str(link))
    # an admin's (root's) link is fine: it runs as the file's owner
    admin = tmp_path / "admin.ini"
    admin.symlink_to(victim)
    assert tyrant.read_config(str(admin)).uid == DAEMON
    # a chain through a user's link is judged link by link
    hop = tmp_path / "hop.ini"
    hop.symlink_to(link)
    with pytest.raises(tyrant.Refused, match="belongs to uid"):
        tyrant.read_config(str(hop))


def test_nofollow_runs_as_the_links_owner_on_root_templates_only(tmp_path: Path) -> None:
    template = file_of(tmp_path / "template.ini", 0, mode=0o644)
    link = tmp_path / "mine.ini"
    link.symlink_to(template)
    os.chown(link, NOBODY, NOBODY, follow_symlinks=False)
    got = tyrant.read_config(str(link), nofollow=True)
    assert (got.uid, got.gid) == (NOBODY, NOBODY)
    template.chmod(0o600)  # the emperor reads as root: it must not hand over what nobody can't
    with pytest.raises(tyrant.Refused, match=f"uid {NOBODY} cannot read"):
        tyrant.read_config(str(link), nofollow=True)
    other = file_of(tmp_path / "other.ini", DAEMON)
    link2 = tmp_path / "theirs.ini"
    link2.symlink_to(other)
    os.chown(link2, NOBODY, NOBODY, follow_symlinks=False)
    with pytest.raises(tyrant.Refused, match=f"leads to a file of uid {DAEMON}"):
        tyrant.read_config(str(link2), nofollow=True)


def test_writable_by_everyone_not_regular_or_too_big_is_refused(tmp_path: Path) -> None:
    with pytest.raises(tyrant.Refused, match="writable by everyone"):
        tyrant.read_config(str(file_of(tmp_path / "w.ini", NOBODY, mode=0o666)))
    fifo = tmp_path / "f.ini"
    os.mkfifo(fifo)
    os.chown(fifo, NOBODY, NOBODY)
    with pytest.raises(tyrant.Refused, match="not a regular file"):
        tyrant.read_config(str(fifo))
    big = file_of(tmp_path / "big.ini", NOBODY, "#" * 70000)
    with pytest.raises(tyrant.Refused, match="more than a config packet holds"):
        tyrant.read_config(str(big))
    with pytest.raises(tyrant.Refused, match="cannot open"):
        tyrant.read_config(str(tmp_path / "missing.ini"))


def test_a_swap_after_the_check_changes_nothing(tmp_path: Path) -> None:
    """Between the checks and the read the file is replaced by a root-owned one and the
    name by a symlink elsewhere: what is read is still the file that was checked."""
    cfg = file_of(tmp_path / "app.ini", NOBODY, "[uwsgi]\nchecked = yes\n")
    evil = file_of(tmp_path / "evil", 0, "[uwsgi]\nuid = 0\n")

    def swap(path: str) -> None:
        os.rename(evil, tmp_path / "evil.ini")
        os.unlink(path)
        os.symlink(tmp_path / "evil.ini", path)

    tyrant.after_check = swap
    got = tyrant.read_config(str(cfg))
    assert (got.uid, got.data) == (NOBODY, b"[uwsgi]\nchecked = yes\n")
    assert os.path.islink(cfg)


def test_symlink_loops_end(tmp_path: Path) -> None:
    a, b = tmp_path / "a.ini", tmp_path / "b.ini"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(tyrant.Refused, match="too many levels"):
        tyrant.read_config(str(a))
