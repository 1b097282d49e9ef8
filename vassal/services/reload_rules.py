"""``reload-on-exception``: which exceptions raised by the app end the worker.

The worker that serves the request exits at once (exit status 5, uWSGI's
UWSGI_EXCEPTION_CODE, no response) and the master respawns it, logging "... monitored
exception detected, respawning worker N (pid: P)...". ``reload-on-exception`` takes every
exception; the others match one:

- ``reload-on-exception-type``: the class name, bare (``ValueError``) or with its module
  (``builtins.ValueError``, ``myapp.errors.Gone``: what uWSGI's python plugin calls the type);
- ``reload-on-exception-value``: ``str(exception)``;
- ``reload-on-exception-repr``: ``TYPE: VALUE`` (either spelling of TYPE).

uWSGI 2.0.21 compares the -type and -repr values against the exception's message by
mistake (core/exceptions.c), so there only ``-value`` works; here each does what its name
and uWSGI's help say.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _types(exc: BaseException) -> tuple[str, str]:
    cls = type(exc)
    return cls.__qualname__, f"{cls.__module__}.{cls.__qualname__}"


def reload_on_exception_rule(config: Any) -> Callable[[BaseException], bool] | None:
    every = bool(config.get("reload-on-exception"))
    types = set(config.getlist("reload-on-exception-type"))
    values = set(config.getlist("reload-on-exception-value"))
    reprs = set(config.getlist("reload-on-exception-repr"))
    if not (every or types or values or reprs):
        return None

    def rule(exc: BaseException) -> bool:
        if every:
            return True
        names = _types(exc)
        if types.intersection(names):
            return True
        text = str(exc)
        if text in values:
            return True
        return any(f"{name}: {text}" in reprs for name in names)

    return rule
