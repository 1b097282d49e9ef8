"""Where config text comes from: files, stdin, the emperor config fd, commands, URLs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping

from emperor import protocol

from .errors import ConfigError

#: reads the config the emperor handed over; argument: the name after emperor://
EmperorReader = Callable[[str], bytes]
#: set by an Imperium emperor in tyrant mode: the config file of this name is read from the
#: config fd (the bytes the emperor read from the file it checked), not opened again by path
ENV_FILE_FROM_EMPEROR = "IMPERIUM_CONFIG_FROM_EMPEROR"


def read_emperor_config(environ: Mapping[str, str], name: str, *, timeout: float = 5.0) -> bytes:
    """Read one framed config from the fd named by UWSGI_EMPEROR_FD_CONFIG.

    The variable is left in place (the instance's VassalLink still needs it) and the fd is
    used through a duplicate so it stays open. A 2.0 emperor pushes the config at spawn; a
    2.1 one only when asked, so if nothing arrives quickly we ask with byte 2 on the main fd.
    """
    raw = environ.get(protocol.ENV_CONFIG_FD)
    if not raw:
        raise ConfigError(f"emperor://{name}: this is not a vassal started with a config fd "
                          f"({protocol.ENV_CONFIG_FD} is not set)")
    try:
        sock = socket.socket(fileno=os.dup(int(raw)))
    except (ValueError, OSError) as exc:
        raise ConfigError(f"emperor://{name}: bad {protocol.ENV_CONFIG_FD}={raw!r}: {exc}") from None
    try:
        sock.settimeout(min(1.0, timeout))
        try:
            return protocol.read_config(sock)
        except TimeoutError:
            _ask_emperor(environ)
        sock.settimeout(timeout)
        return protocol.read_config(sock)
    except (TimeoutError, EOFError, OSError, ValueError) as exc:
        raise ConfigError(f"emperor://{name}: cannot read the config from the emperor: {exc}") from None
    finally:
        sock.close()


def _ask_emperor(environ: Mapping[str, str]) -> None:
    raw = environ.get(protocol.ENV_FD)
    if not raw:
        return
    try:
        with socket.socket(fileno=os.dup(int(raw))) as main:
            main.send(bytes([protocol.ToEmperor.CONFIG_REQUEST]))
    except (ValueError, OSError):
        pass


def read_source(name: str, environ: Mapping[str, str], emperor_reader: EmperorReader | None = None) -> str:
    """The text of the config called ``name`` (section suffix already removed)."""
    if name == "-":
        return sys.stdin.read()
    if (environ.get(ENV_FILE_FROM_EMPEROR) == name and environ.get(protocol.ENV_CONFIG_FD)
            and hasattr(environ, "pop")):
        environ.pop(ENV_FILE_FROM_EMPEROR)  # the main file only, once per start
        data = emperor_reader(name) if emperor_reader else read_emperor_config(environ, name)
        return data.decode("utf-8", "replace")
    scheme, sep, rest = name.partition("://")
    if sep and scheme.isalnum():
        if scheme == "emperor":
            data = emperor_reader(rest) if emperor_reader else read_emperor_config(environ, rest)
            return data.decode("utf-8", "replace")
        if scheme == "exec":
            try:
                done = subprocess.run(rest, shell=True, stdout=subprocess.PIPE, timeout=60, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise ConfigError(f"{name}: cannot run: {exc}") from None
            if done.returncode != 0:
                raise ConfigError(f"{name}: command exited with status {done.returncode}")
            return done.stdout.decode("utf-8", "replace")
        if scheme in ("http", "https"):
            try:
                import urllib.error  # only http(s) configs pay for urllib's import time
                import urllib.request

                with urllib.request.urlopen(name, timeout=30) as resp:  # noqa: S310 - user asked for it
                    return resp.read().decode("utf-8", "replace")
            except (urllib.error.URLError, OSError, ValueError) as exc:
                raise ConfigError(f"{name}: cannot fetch: {exc}") from None
        if scheme == "fd":
            try:
                with os.fdopen(os.dup(int(rest)), "rb") as fh:
                    return fh.read().decode("utf-8", "replace")
            except (ValueError, OSError) as exc:
                raise ConfigError(f"{name}: cannot read: {exc}") from None
        raise ConfigError(f"{name}: unsupported config scheme {scheme}://")
    try:
        with open(name, "rb") as fh:
            return fh.read().decode("utf-8", "replace")
    except OSError as exc:
        raise ConfigError(f"cannot open config file {name}: {exc.strerror or exc}") from None
