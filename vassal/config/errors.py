"""The one exception of the option language."""

from __future__ import annotations


class ConfigError(Exception):
    """A config that cannot be used; the message names the option and where it came from.

    ``line`` is the line of the offending text when a file reader knows it: the loader uses
    it to name the place without the content, for files whose content must not be shown.
    """

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line
