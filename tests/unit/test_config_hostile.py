"""A hostile or careless config gets one line naming file and line, in bounded time and
memory, and never shows the content of a file its author could not read."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from emperor import cli
from tests.conftest import need_service
from vassal.config import Config, ConfigError, load_config
from vassal.config.loader import MAX_DEPTH, MAX_OPTIONS
from vassal.config.placeholders import MAX_VALUE

SECRET = "s3cr3t-hash-ABCDEF"


def load(argv: list[str], **kw: object) -> Config:
    return load_config(argv, {}, **kw)  # type: ignore[arg-type]


# ---- nesting and loops --------------------------------------------------------------------------

def test_deep_include_chain_is_one_line_naming_the_chain(tmp_path: Path, capsys) -> None:
    for i in range(300):
        (tmp_path / f"f{i}.ini").write_text(f"[uwsgi]\ninclude = {tmp_path}/f{i + 1}.ini\n")
    (tmp_path / "f300.ini").write_text("[uwsgi]\nmaster = true\n")
    assert cli.main([str(tmp_path / "f0.ini")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"config files nested more than {MAX_DEPTH} deep: {tmp_path}/f0.ini -> {tmp_path}/f1.ini" in err
    assert f"-> {tmp_path}/f{MAX_DEPTH}.ini (from {tmp_path}/f{MAX_DEPTH - 1}.ini:2)" in err


def test_include_cycle_names_its_files(tmp_path: Path) -> None:
    (tmp_path / "a.ini").write_text(f"[uwsgi]\nini = {tmp_path}/b.ini:x\n")
    (tmp_path / "b.ini").write_text(f"[x]\ninherit = {tmp_path}/a.ini\n[uwsgi]\n")
    with pytest.raises(ConfigError, match=rf"^config include loop: {tmp_path}/a.ini -> {tmp_path}/b.ini:x"
                       rf" -> {tmp_path}/a.ini \(from {tmp_path}/b.ini:2\)$"):
        load([str(tmp_path / "a.ini")])


def test_a_file_may_be_nested_as_deep_as_the_limit(tmp_path: Path) -> None:
    for i in range(MAX_DEPTH - 1):
        (tmp_path / f"f{i}.ini").write_text(f"[uwsgi]\ninclude = {tmp_path}/f{i + 1}.ini\n")
    (tmp_path / f"f{MAX_DEPTH - 1}.ini").write_text("[uwsgi]\nlisten = 7\n")
    assert load([str(tmp_path / "f0.ini")]).get("listen") == 7


# ---- expansion and size -----------------------------------------------------------------------

def test_big_value_used_many_times_stops_at_the_cap(tmp_path: Path) -> None:
    # 1 MB x 900 ran 2 minutes and took 1 GB when expansion was quadratic
    f = tmp_path / "big.ini"
    f.write_text("[uwsgi]\nbig = " + "x" * (1 << 20) + "\n" + "".join(f"v{i} = %(big)\n" for i in range(900)))
    with pytest.raises(ConfigError, match=r"expanded options hold more than \d+ characters"):
        load([str(f)])
    f.write_text("[uwsgi]\nbig = " + "x" * (1 << 19) + "\nv = " + "%(big)" * 900 + "\n")
    with pytest.raises(ConfigError, match=rf"{f}:3: value longer than {MAX_VALUE} characters"):
        load([str(f)])


def test_many_references_to_a_value_within_the_cap_expand(tmp_path: Path) -> None:
    f = tmp_path / "ok.ini"
    f.write_text("[uwsgi]\nw = 0123456789\nprocname = " + "%(w)-" * 900 + "\n")
    assert load([str(f)]).get("procname") == "0123456789-" * 900


def test_for_times_cannot_flood_the_option_list(tmp_path: Path) -> None:
    f = tmp_path / "flood.ini"
    f.write_text("[uwsgi]\nfor-times = 99999999999999\nenv = X%(_)=1\nendfor =\n")
    with pytest.raises(ConfigError, match=rf"more than {MAX_OPTIONS} options \({f}:3\)"):
        load([str(f)])


def test_at_file_reads_a_bounded_amount(tmp_path: Path) -> None:
    f = tmp_path / "zero.ini"
    f.write_text("[uwsgi]\nprocname = @(/dev/zero)\n")
    with pytest.raises(ConfigError, match="value longer than"):
        load([str(f)])


# ---- content of files the author could not read ---------------------------------------------

@pytest.fixture
def nobody() -> pwd.struct_passwd:
    need_service("root", os.geteuid() == 0, "files owned by another user need root to make")
    return pwd.getpwnam("nobody")


def _owned(path: Path, text: str, user: pwd.struct_passwd, mode: int) -> Path:
    path.write_text(text)
    os.chown(path, user.pw_uid, user.pw_gid)
    path.chmod(mode)
    return path


def test_include_of_a_file_the_author_cannot_read_is_not_quoted(tmp_path: Path, nobody) -> None:
    tmp_path.chmod(0o755)
    secret = _owned(tmp_path / "secret.ini", f"[uwsgi]\nroot:{SECRET} = 1\nprocesses = {SECRET}\n",
                    pwd.getpwuid(0), 0o600)
    cfg = _owned(tmp_path / "app.ini", f"[uwsgi]\ninclude = {secret}\nuser-key = {SECRET}\n", nobody, 0o644)
    c = load([str(cfg)])
    notes = "\n".join(c.notices())
    assert f"a key ({secret}:2) is not an option" in notes
    assert f"option processes ({secret}:3): its value is not a number" in notes
    assert f"user-key ({cfg}:3)" in notes  # the author's own file is quoted as usual
    assert SECRET not in notes.replace(f"user-key = {SECRET}", "")


def test_config_that_is_a_planted_symlink_to_a_secret(tmp_path: Path, nobody) -> None:
    tmp_path.chmod(0o755)
    root = pwd.getpwuid(0)
    shadow = _owned(tmp_path / "shadow", f"[uwsgi]\nroot:{SECRET}:19000:0:99999:7:::\n", root, 0o600)
    link = tmp_path / "vassal.ini"
    link.symlink_to(shadow)
    os.lchown(link, nobody.pw_uid, nobody.pw_gid)
    notes = load([str(link)]).notices()
    assert notes == [f"a key ({link}:2) is not an option: kept as a placeholder (as uWSGI does; strict "
                     "refuses it)"]
    secret_yaml = _owned(tmp_path / "secret.yaml", f"other: {SECRET}\n\tuwsgi: 1\n", root, 0o600)
    link = tmp_path / "vassal.yaml"
    link.symlink_to(secret_yaml)
    os.lchown(link, nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(ConfigError) as err:
        load([str(link)])
    assert str(err.value) == f"{link}:2: malformed yaml"
    # the same files given by their owner are quoted
    assert SECRET in "".join(load(["--ini", str(shadow)]).notices())
    with pytest.raises(ConfigError, match="malformed yaml: found character"):
        load([str(secret_yaml)])


def test_placeholder_loop_in_a_private_file_hides_the_key(tmp_path: Path, nobody) -> None:
    tmp_path.chmod(0o755)
    secret = _owned(tmp_path / "s.ini", f"[uwsgi]\n{SECRET} = x%({SECRET})\nprocname = %({SECRET})\n",
                    pwd.getpwuid(0), 0o600)
    cfg = _owned(tmp_path / "app.ini", f"[uwsgi]\ninclude = {secret}\n", nobody, 0o644)
    with pytest.raises(ConfigError) as err:
        load([str(cfg)])
    assert "endless expansion of %(...)" in str(err.value) and SECRET not in str(err.value)


def test_at_file_of_a_secret_is_not_quoted_in_notices_nor_errors(tmp_path: Path, nobody) -> None:
    """``@(file)`` copies a file into a value: one the author cannot read stays unquoted,
    in the reader's notices and in the errors of the start (a socket that cannot be bound)."""
    import subprocess

    from tests.conftest import IMPERIUM
    from vassal.config.privacy import redact

    tmp_path.chmod(0o755)
    secret = _owned(tmp_path / "secret", f"{SECRET}:zz\n", pwd.getpwuid(0), 0o600)  # a bad address
    cfg = _owned(tmp_path / "app.ini", f"[uwsgi]\nprocesses = @({secret})\nk = @({secret})\n"
                 "listen = %(k)\n", nobody, 0o644)
    c = load([str(cfg)])
    notes = "\n".join(c.notices())
    assert f"option processes ({cfg}:2): its value is not a number" in notes, notes
    assert f"option listen ({cfg}:4): its value is not a number" in notes, notes
    assert SECRET not in notes
    assert redact(f"bad {c.get('procname') or ''}{c.getlist('processes')!r} {c.placeholders['k']}",
                  c.private_texts).count(SECRET) == 0
    cfg.write_text(f"[uwsgi]\nhttp-socket = @({secret})\n")
    done = subprocess.run([IMPERIUM, "--ini", str(cfg)], capture_output=True, text=True, timeout=30,
                          cwd=tmp_path)
    assert done.returncode == 1
    assert "imperium: cannot bind http-socket <private>: bad port" in done.stderr, done.stderr
    assert SECRET not in done.stderr + done.stdout
    # the owner of the secret (root) writing the same config is told everything
    os.chown(cfg, 0, 0)
    done = subprocess.run([IMPERIUM, "--ini", str(cfg)], capture_output=True, text=True, timeout=30,
                          cwd=tmp_path)
    assert SECRET in done.stderr
