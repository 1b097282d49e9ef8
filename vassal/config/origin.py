"""Where an option came from, for error messages."""

from __future__ import annotations

from dataclasses import dataclass

COMMAND_LINE = "command line"


@dataclass(frozen=True)
class Origin:
    """A place in the configuration: a file and line, the command line, or a variable."""

    where: str  # file name, "command line" or "environment variable UWSGI_X"
    line: int | None = None
    #: the text there must not be quoted in messages (a file the config's owner cannot read)
    private: bool = False

    def __str__(self) -> str:
        return f"{self.where}:{self.line}" if self.line is not None else self.where
