"""The corpus of real uWSGI configs (tests/corpus): every one is judged, none makes the
option language fail with anything but a one-line ConfigError, and the counts are printed
(``pytest -s``; or ``python -m tests.corpus.count -v``)."""

from __future__ import annotations

import re
from collections import Counter

from tests.corpus import count

#: configs that loaded with every option implemented when this floor was last raised; raise
#: it as options get implemented (the goal is 90% of the corpus)
IMPLEMENTED_FLOOR = 82


def test_manifest_names_every_config_with_its_source() -> None:
    entries = count.manifest()
    files = sorted(p.name for p in (count.HERE / "configs").iterdir())
    assert sorted(e["file"] for e in entries) == files
    assert len(entries) >= 60
    for e in entries:
        assert re.fullmatch(r"[0-9a-f]{40}", e["commit"]), e
        assert e["repo"].count("/") == 1 and e["path"], e
        assert e["format"] in ("ini", "xml", "yaml", "json"), e
    assert len({e["repo"] for e in entries}) >= 50  # many projects, not one project's files


def test_corpus_counts() -> None:
    verdicts = count.survey()  # any exception but ConfigError fails here
    print("\n" + count.report(verdicts))
    counts = Counter(v.cls for v in verdicts)
    assert sum(counts.values()) == len(count.manifest())
    assert counts["implemented"] >= IMPLEMENTED_FLOOR
    for v in verdicts:
        assert v.cls in count.CLASSES
        assert (v.cls == "implemented") == (not v.because), v
