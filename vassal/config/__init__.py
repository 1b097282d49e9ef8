"""uWSGI's option language: command line, ini/xml/yaml/json files, placeholders, magic
variables and ``UWSGI_*`` environment variables, resolved into one ``Config``.

    config = load_config(["--ini", "app.ini", "-p", "4"])
    config.get("processes")      # 4 (typed, last value given, or the table default)
    config.getlist("socket")     # every socket given, in order
"""

from __future__ import annotations

from .errors import ConfigError
from .loader import ENV_NOT_OPTIONS, load_config
from .model import Config, Entry, parse_bool
from .origin import Origin

__all__ = ["ENV_NOT_OPTIONS", "Config", "ConfigError", "Entry", "Origin", "load_config", "parse_bool"]
