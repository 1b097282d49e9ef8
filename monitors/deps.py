"""Client libraries of the network monitors are optional extras: say which one is missing."""

from __future__ import annotations

import importlib.util


def require(module: str, extra: str, scheme: str) -> None:
    """Raise a one-line error naming the pip extra when ``module`` is not installed."""
    if importlib.util.find_spec(module) is None:
        raise ValueError(f"{scheme}:// needs the {module} package: pip install 'imperium[{extra}]'")
