"""Load every config of the corpus and count how each one fares:

- ``implemented``: it loads, and every option it gives is one Imperium acts on;
- ``ignored``: it loads, but gives options Imperium accepts without effect (``ignored=True``
  in vassal/options.py, each printing a notice);
- ``refused``: it does not load (a uWSGI option Imperium does not support, or another
  error of the option language, e.g. an include of a file that is not in the corpus).

"Loads" means what ``imperium CONFIG`` checks before it binds anything or imports the app:
the option language (files, includes, placeholders, logic) and the option table's
validation, as ``vassal.config.load_config`` does it, then the values the instance checks
at start-up (static files, routing rules, hooks, crons, daemons), in a clean environment (no
UWSGI_* variables; the working directory is the config's own directory).

    python -m tests.corpus.count          # counts, then the options responsible, ranked
    python -m tests.corpus.count -v       # and the verdict for every config
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vassal import routing
from vassal.config import ConfigError, load_config
from vassal.options import OPTIONS
from vassal.protocols import static
from vassal.services.plan import PlanError, ServicePlan

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.json"
CLASSES = ("implemented", "ignored", "refused")


@dataclass
class Verdict:
    name: str
    cls: str
    #: what kept it out of "implemented": option names, or "error: ..." for other refusals
    because: list[str] = field(default_factory=list)


def manifest() -> list[dict[str, str]]:
    return json.loads(MANIFEST.read_text())["configs"]


#: what the corpus tool never does on someone else's behalf: run commands, fetch URLs
UNSAFE = re.compile(r"exec://|^\s*<?(?:include|inherit|ini|xml|yaml|yml|json|js|config)\b[\s=:>]*(?:https?://|-\s*$)",
                    re.M)


def judge(entry: dict[str, str]) -> Verdict:
    path = HERE / "configs" / entry["file"]
    if UNSAFE.search(path.read_text(errors="replace")):
        return Verdict(entry["file"], "refused", ["error: not loaded by the corpus tool (runs a command or fetches a URL)"])
    unsupported: list[str] = []
    argv = [f"--{entry['format']}", str(path)]
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # "print" options
            config = load_config(argv, {}, cwd=str(path.parent), survey=unsupported)
    except ConfigError as exc:
        return Verdict(entry["file"], "refused", [*sorted(set(unsupported)), "error: " + _general(str(exc))])
    finally:
        os.chdir(cwd)
    if not unsupported:
        refusal = _start_up_refusal(config)
        if refusal:
            return Verdict(entry["file"], "refused", ["error: " + _general(refusal)])
    if unsupported:
        return Verdict(entry["file"], "refused", sorted(set(unsupported)))
    ignored = sorted({e.name for e in config.entries if e.name is not None and OPTIONS[e.name].ignored})
    return Verdict(entry["file"], "ignored" if ignored else "implemented", ignored)


def _start_up_refusal(config: object) -> str | None:
    """What the instance checks of the values before it binds a socket (static files, the
    routing rules, hooks, crons, daemons): its one-line refusal, or None."""
    with _quiet():
        try:
            files = static.from_config(config)
            routing.from_config(config, files)
            ServicePlan(config)
        except (static.StaticConfigError, routing.RouteError, PlanError) as exc:
            return str(exc)
    return None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The start-up lines these checks log go to fd 1/2 directly: to /dev/null meanwhile."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def _general(message: str) -> str:
    """An error message without its file names and line numbers, so that alike ones add up."""
    message = re.sub(r"\([^()]*:\d+\)|\(from [^()]*\)|\(command line\)", "", message)
    message = re.sub(r"\S*/\S*", "FILE", message)
    return " ".join(message.split())


def survey() -> list[Verdict]:
    return [judge(entry) for entry in manifest()]


def report(verdicts: list[Verdict], verbose: bool = False) -> str:
    counts = Counter(v.cls for v in verdicts)
    total = len(verdicts)
    lines = [f"uWSGI config corpus: {total} configs"]
    for cls in CLASSES:
        lines.append(f"  {cls:<12} {counts[cls]:>4}  ({100 * counts[cls] / max(total, 1):.0f}%)")
    kind = {reason: v.cls for v in verdicts for reason in v.because}
    ranked = Counter(reason for v in verdicts for reason in v.because)
    alone = Counter(v.because[0] for v in verdicts if len(v.because) == 1)
    if ranked:
        lines.append("what keeps configs out of 'implemented', ranked (configs it affects; configs it "
                     "alone keeps out):")
        lines.extend(f"  {n:>4} {alone[reason]:>4}  {reason}  ({kind[reason]})"
                     for reason, n in sorted(ranked.items(), key=lambda kv: (-kv[1], -alone[kv[0]], kv[0])))
    if verbose:
        lines.append("verdicts:")
        lines.extend(f"  {v.cls:<12} {v.name}  {' '.join(v.because)}" for v in verdicts)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    print(report(survey(), verbose="-v" in args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
