"""The optional C accelerators, found in one place.

Each accelerator (``vassal/api/_cachefast.c``, ``vassal/protocols/_headparse.c``,
``vassal/protocols/_headfast.c``, ``vassal/_scorefast.c``) takes the plain case of one hot
path; the Python code beside it is complete on its own. The install builds them when a C
compiler is there (``optional = true`` in pyproject.toml); ``IMPERIUM_NO_ACCEL=1`` turns
them all off, for comparison and for the tests that run both ways.
"""

from __future__ import annotations

import importlib
import os
from typing import Any


def optional(module: str) -> Any:
    """The accelerator ``module`` when it was built and is not turned off, else None."""
    if os.environ.get("IMPERIUM_NO_ACCEL"):
        return None
    try:
        return importlib.import_module(module)
    except ImportError:  # not compiled here: the Python path does it all
        return None
