"""The ``imperium`` (and ``uwsgi``) command: uWSGI's command line, three modes.

Options come from argv, config files and ``UWSGI_*`` variables through the one option table
in ``vassal.options``. With ``emperor`` set we run the Emperor; with ``connect-and-read`` we
are a stats client; otherwise we are an instance (a vassal).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from vassal.config import ConfigError, load_config

    args = sys.argv[1:] if argv is None else argv
    try:
        config = load_config(args)
    except ConfigError as exc:
        print(f"imperium: {exc}", file=sys.stderr)
        return 1
    if config.help_requested:
        from vassal.options import format_help

        print(format_help())
        return 0
    if config.version_requested:
        from vassal.options import VERSION

        print(VERSION)
        return 0
    for notice in config.notices():
        print(f"imperium: warning: {notice}", file=sys.stderr)
    if config.get("show-config"):
        print(config.show_config(), end="", flush=True)
    if config.get("imperial-monitor-list"):
        from monitors import imperial_monitor_list

        print(imperial_monitor_list(), file=sys.stderr, flush=True)
        if not (config.getlist("emperor") or config.getlist("socket") or config.getlist("http-socket")
                or config.getlist("http") or config.getlist("zerg")):
            return 0  # nothing else asked: list and exit (uWSGI would go on and fail)
    if config.get("connect-and-read"):
        from vassal.stats import connect_and_read

        return connect_and_read(config.get("connect-and-read"))
    if config.getlist("emperor"):
        from emperor.core import run_emperor

        return run_emperor(config)
    from vassal.instance import run_instance

    return run_instance(config)


if __name__ == "__main__":
    sys.exit(main())
