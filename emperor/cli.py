"""The ``imperium`` (and ``uwsgi``) command: uWSGI's command line, three modes.

Options come from argv, config files and ``UWSGI_*`` variables through the one option table
in ``vassal.options``. With ``emperor`` set we run the Emperor; with ``connect-and-read`` we
are a stats client; otherwise we are an instance (a vassal). Two commands of our own come
first when named: ``imperium ctl SOCKET COMMAND`` (emperor.ctl) and ``imperium top ADDR``
(emperor.top).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from vassal.config import ConfigError, load_config

    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in SUBCOMMANDS:
        return SUBCOMMANDS[args[0]](args[1:])
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
    for line in config.reading:
        print(line, file=sys.stderr)
    for notice in config.notices():
        print(f"imperium: warning: {notice}", file=sys.stderr)
    if config.get("imperial-monitor-list"):
        print(monitor_list(), end="", flush=True)
    if config.get("show-config"):
        print(config.show_config(), end="", flush=True)
    if config.get("connect-and-read"):
        from vassal.stats import connect_and_read

        return connect_and_read(config.get("connect-and-read"))
    if config.get("fleet-status"):
        from monitors.zoo_status import fleet_status

        return fleet_status(config.get("fleet-status"))
    if config.getlist("emperor"):
        from emperor.core import run_emperor

        return run_emperor(config)
    from vassal.instance import run_instance

    return run_instance(config)


def _ctl(args: list[str]) -> int:
    from emperor import ctl

    return ctl.main(args)


def _top(args: list[str]) -> int:
    from emperor import top

    return top.main(args)


#: commands of our own, before uWSGI's command line: ``imperium ctl ...``, ``imperium top ...``
SUBCOMMANDS = {"ctl": _ctl, "top": _top}


def monitor_list() -> str:
    """What ``imperial-monitor-list`` prints (uWSGI's layout): every scheme we can load."""
    from importlib.metadata import entry_points

    from monitors import BUILTIN

    schemes = list(BUILTIN) + sorted({ep.name for ep in entry_points(group="imperium.monitors")}
                                     - set(BUILTIN))
    return ("\n*** uWSGI loaded imperial monitors ***\n" + "".join(f"{s}\n" for s in schemes)
            + "--- end of imperial monitors list ---\n\n")


if __name__ == "__main__":
    sys.exit(main())
