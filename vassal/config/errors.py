"""The one exception of the option language."""

from __future__ import annotations


class ConfigError(Exception):
    """A config that cannot be used; the message names the option and where it came from."""
