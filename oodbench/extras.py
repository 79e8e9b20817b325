"""Optional extras: a feature that needs a package the core install does not pull in says which
extra to install, in one line, instead of ending in a ``ModuleNotFoundError`` traceback."""

from __future__ import annotations

import importlib
from types import ModuleType

from oodbench.errors import ConfigError


def require_extra(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module``, or raise a :class:`ConfigError` naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        raise ConfigError(f"{feature} needs the optional extra '{extra}' ({module} is not installed)",
                          f"pip install 'oodbench[{extra}]'") from None
