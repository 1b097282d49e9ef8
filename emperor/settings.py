"""The emperor's settings, read once from a ``Config`` (the option language's result).

Defaults are uWSGI's (core/init.c); the one exception to the option table is
``reload-mercy``: when not given, the emperor waits 30 s for its vassals at shutdown, as
uWSGI's ``royal_death`` does, whatever a vassal's own default is.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def default_binary() -> str:
    """Our own command, as uWSGI uses its own binary: the ``imperium`` next to the interpreter."""
    here = Path(sys.executable).parent / "imperium"
    if here.exists():
        return str(here)
    found = shutil.which("imperium")
    if found:
        return found
    arg0 = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return arg0 if arg0 and os.access(arg0, os.X_OK) else "imperium"


@dataclass
class EmperorSettings:
    monitors: list[str] = field(default_factory=list)
    freq: int = 3
    throttle_ms: int = 1000
    max_throttle_ms: int = 180000
    required_heartbeat: int = 30
    curse_tolerance: int = 30
    reload_mercy: int = 30
    tyrant: bool = False
    tyrant_nofollow: bool = False
    nofollow: bool = False
    extra_extensions: tuple[str, ...] = ()
    magic_exec: bool = False
    wrapper: str | None = None
    binary_path: str | None = None
    vassals_inherit: list[str] = field(default_factory=list)
    vassals_include: list[str] = field(default_factory=list)
    vassals_inherit_before: list[str] = field(default_factory=list)
    vassals_include_before: list[str] = field(default_factory=list)
    vassal_set: list[str] = field(default_factory=list)
    stats: str | None = None
    stats_http: bool = False
    stats_minified: bool = False
    pidfile: str | None = None
    start_hook: str | None = None
    stop_hook: str | None = None
    graceful_shutdown: bool = False
    no_blacklist: bool = False
    procname: str | None = None
    logto: str | None = None
    spawn_method: str = "fork"  # emperor-spawn: fork our own vassals, or always exec
    wrapper_override: list[str] = field(default_factory=list)
    wrapper_fallback: list[str] = field(default_factory=list)
    on_demand_extension: str | None = None
    on_demand_directory: str | None = None
    on_demand_exec: str | None = None
    broodlord: int = 0  # emperor-broodlord: zergs allowed in all (0: off)
    use_clone: int = 0  # emperor-use-clone: namespace flags (emperor.isolation.linux.Clone)
    vassals_cap: list[int] | None = None  # emperor-cap / vassals-cap
    tyrant_initgroups: bool = False
    vassals_cgroup_opts: list[tuple[str, str]] = field(default_factory=list)  # vassals-cgroup-opt
    prometheus: str | None = None  # emperor-prometheus: ADDR of the /metrics endpoint
    control_socket: str | None = None  # emperor-control-socket: PATH (emperor.control)
    log_prefix: bool = False  # emperor-log-prefix: vassal lines as "[NAME] line"
    vassal_logdir: str | None = None  # emperor-vassal-logdir: DIR/NAME.log per vassal
    fleet_member: str | None = None
    fleet_labels: list[str] = field(default_factory=list)

    def binary(self) -> str:
        return self.wrapper or self.binary_path or default_binary()

    def notices(self) -> list[str]:
        """One line for each option given that nothing will read (house rule: never
        accepted silently)."""
        lines = []
        if not any(m.startswith("zoo://") for m in self.monitors):
            for name, given in (("emperor-fleet-member", self.fleet_member),
                                ("emperor-fleet-labels", self.fleet_labels)):
                if given:
                    lines.append(f"[emperor] {name} is ignored: it names this emperor in a zoo:// "
                                 "fleet, and no zoo:// monitor is given")
        return lines

    @classmethod
    def from_config(cls, config: Any) -> EmperorSettings:
        def get(name: str, default: Any = None) -> Any:
            try:
                value = config.get(name, default)
            except (KeyError, LookupError):
                return default
            return default if value is None else value

        def getlist(name: str) -> list:
            try:
                return [v for v in config.getlist(name) if v is not None]
            except (KeyError, LookupError):
                return []

        def has(name: str) -> bool:
            try:
                return bool(config.has(name))
            except (KeyError, LookupError):
                return False

        _refuse_unsupported(has, get)
        settings = cls(
            monitors=[str(v) for v in getlist("emperor")],
            freq=max(1, int(get("emperor-freq", 3))),
            throttle_ms=int(get("emperor-throttle", 1000)),
            max_throttle_ms=int(get("emperor-max-throttle", 180000)),
            required_heartbeat=int(get("emperor-required-heartbeat", 30)),
            curse_tolerance=int(get("emperor-curse-tolerance", 30)),
            reload_mercy=int(get("reload-mercy", 30)) if has("reload-mercy") else 30,
            tyrant=bool(get("emperor-tyrant", False)),
            tyrant_nofollow=bool(get("emperor-tyrant-nofollow", False)),
            nofollow=bool(get("emperor-nofollow", False)),
            extra_extensions=tuple(str(v) for v in getlist("emperor-extra-extension")),
            magic_exec=bool(get("emperor-magic-exec", False)),
            wrapper=get("emperor-wrapper"),
            binary_path=get("binary-path"),
            vassals_inherit=[str(v) for v in getlist("vassals-inherit")],
            vassals_include=[str(v) for v in getlist("vassals-include")],
            vassals_inherit_before=[str(v) for v in getlist("vassals-inherit-before")],
            vassals_include_before=[str(v) for v in getlist("vassals-include-before")],
            vassal_set=[str(v) for v in getlist("vassal-set")],
            stats=get("emperor-stats"),
            stats_http=bool(get("stats-http", False)),
            stats_minified=bool(get("stats-minified", False)),
            pidfile=get("emperor-pidfile"),
            start_hook=get("vassals-start-hook"),
            stop_hook=get("vassals-stop-hook"),
            graceful_shutdown=bool(get("emperor-graceful-shutdown", False)),
            no_blacklist=bool(get("emperor-no-blacklist", False)),
            procname=get("emperor-procname"),
            logto=get("logto"),
            spawn_method=_spawn_method(get("emperor-spawn", "fork")),
            wrapper_override=[str(v) for v in getlist("emperor-wrapper-override")],
            wrapper_fallback=[str(v) for v in getlist("emperor-wrapper-fallback")],
            on_demand_extension=get("emperor-on-demand-extension"),
            on_demand_directory=get("emperor-on-demand-directory"),
            on_demand_exec=get("emperor-on-demand-exec"),
            broodlord=max(0, int(get("emperor-broodlord", 0) or 0)),
            tyrant_initgroups=bool(get("emperor-tyrant-initgroups", False)),
            prometheus=get("emperor-prometheus"),
            # absolute now: the emperor chdir()s to its vassal directory before binding it
            control_socket=_absolute(get("emperor-control-socket")),
            log_prefix=bool(get("emperor-log-prefix", False)),
            vassal_logdir=_directory(get("emperor-vassal-logdir"), "emperor-vassal-logdir"),
            fleet_member=get("emperor-fleet-member"),
            fleet_labels=[str(v) for v in getlist("emperor-fleet-labels")],
        )
        _isolation(settings, get, getlist)
        return settings


#: emperor options uWSGI has that Imperium does not implement: refused by name, never
#: accepted without their effect
UNSUPPORTED: dict[str, str] = {}


def _isolation(settings: EmperorSettings, get: Any, getlist: Any) -> None:
    """emperor-use-clone, emperor-cap and vassals-cgroup-opt, checked now: a typo stops the
    emperor at once."""
    from emperor.isolation import capabilities, cgroups, namespaces
    from emperor.isolation.linux import Clone

    clone = get("emperor-use-clone")
    if clone:
        settings.use_clone = int(namespaces.parse(clone, "emperor-use-clone"))
        if settings.use_clone & Clone.NEWUSER and not settings.tyrant and os.geteuid() == 0:
            raise ValueError(f"emperor-use-clone = {clone}: a user namespace maps the vassal's "
                             "root to its owner: it needs emperor-tyrant (without it, the "
                             "vassal's root would be the host's root)")
    cap = get("emperor-cap")
    if cap:
        settings.vassals_cap = capabilities.parse(cap, "emperor-cap")
    for item in getlist("vassals-cgroup-opt"):
        try:
            settings.vassals_cgroup_opts.append(cgroups.parse_opt(str(item)))
        except cgroups.CgroupError as exc:
            raise ValueError(f"vassals-cgroup-opt = {item}: {exc}") from None


def _refuse_unsupported(has: Any, get: Any) -> None:
    for name, why in UNSUPPORTED.items():
        if has(name):
            raise ValueError(f"{name}: not supported by Imperium ({why})")


def _spawn_method(value: Any) -> str:
    method = str(value).strip().lower()
    if method not in ("fork", "exec"):
        raise ValueError(f"emperor-spawn = {value}: must be fork or exec")
    return method


def _directory(value: Any, option: str) -> str | None:
    if not value:
        return None
    path = os.path.abspath(str(value))
    if not os.path.isdir(path):
        raise ValueError(f"{option} {value}: no such directory")
    return path


def _absolute(value: Any) -> str | None:
    return os.path.abspath(str(value)) if value else None
