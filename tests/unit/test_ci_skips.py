"""With CI=true nothing skips silently: every skip of the suite goes through the helpers of
tests/conftest.py (need_service, need_module, need_root; optional_service for the
documented MongoDB exception), which fail instead of skipping in CI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

TESTS = ROOT / "tests"
# spelled in pieces so that this file does not match itself
_SKIP = "sk" + "ip"
FORBIDDEN = re.compile("|".join([
    r"pytest\s*\.\s*" + _SKIP + r"\b",
    r"\b" + _SKIP + r"if\b",
    r"\bimportor" + _SKIP + r"\b",
    r"\bmark\s*\.\s*" + _SKIP + r"\b",
    r"\bunittest\s*\.\s*" + _SKIP + r"\b",
    r"\b" + _SKIP.capitalize() + r"Test\b",
    r"from\s+pytest\s+import\s+[^\n]*\b" + _SKIP + r"\b",
]))


def test_no_skip_bypasses_the_ci_helpers() -> None:
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        if path == TESTS / "conftest.py":
            continue  # where the helpers live
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if FORBIDDEN.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, ("skip through tests/conftest.py's need_service/need_module/need_root "
                           "so that CI=true fails instead:\n" + "\n".join(offenders))


def test_the_helpers_fail_with_ci_true_and_skip_without(tmp_path: Path) -> None:
    (tmp_path / "test_probe.py").write_text(
        "from tests.conftest import need_module, need_service, optional_service\n"
        "def test_module():\n    need_module('no_such_module_imperium')\n"
        "def test_service():\n    need_service('nothing', False, 'not here')\n"
        "def test_optional():\n    optional_service('mongodb', False, 'no MONGODB_URL')\n")
    results = {}
    for ci in ("true", ""):
        env = {**os.environ, "CI": ci, "PYTHONPATH": str(ROOT)}
        out = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider",
                              "-p", "no:xdist", str(tmp_path / "test_probe.py")],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=60).stdout
        results[ci] = dict(re.findall(r"::(test_\w+) (PASSED|FAILED|SKIPPED)", out))
    assert results["true"] == {"test_module": "FAILED", "test_service": "FAILED",
                               "test_optional": "SKIPPED"}, results
    assert set(results[""].values()) == {"SKIPPED"}, results

