"""`python -m bench`: every benchmark present, one table each, peers measured in the same run.

bench_vassal (ours) always runs; bench_emperor, bench_monitors, bench_static, bench_api,
bench_spooler and bench_cheaper run when their modules
exist. Each bench module offers ``main(argv) -> int`` and prints its own table.

    python -m bench                      # all of them
    python -m bench vassal emperor       # only these
    python -m bench vassal -- --duration 2 --starts 3   # arguments after -- go to each bench
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import time

BENCHES = ("vassal", "emperor", "monitors", "static", "api", "spooler", "cheaper", "routing")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in args:
        i = args.index("--")
        args, extra = args[:i], args[i + 1:]
    wanted = args or list(BENCHES)
    status = 0
    for name in wanted:
        module = f"bench.bench_{name}"
        if importlib.util.find_spec(module) is None:
            if args:
                print(f"bench: no module {module}", file=sys.stderr)
                status = 1
            continue
        t0 = time.monotonic()
        print(f"== {module}", flush=True)
        try:
            rc = importlib.import_module(module).main(list(extra))
        except SystemExit as exc:  # argparse errors of one bench must not stop the others
            rc = exc.code if isinstance(exc.code, int) else 1
        except Exception as exc:
            print(f"bench: {module} crashed: {exc!r}", file=sys.stderr)
            rc = 1
        print(f"   ({module}: {time.monotonic() - t0:.0f}s)", flush=True)
        status = status or (rc or 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
