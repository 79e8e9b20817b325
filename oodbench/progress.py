"""Progress bars with rate and ETA for every long stage (tqdm on stderr).

Bars are drawn when stderr is a terminal; ``OODBENCH_PROGRESS=1`` forces them on (e.g. in a
logged batch job) and ``OODBENCH_PROGRESS=0`` off.
"""

from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_enabled() -> bool:
    setting = os.environ.get("OODBENCH_PROGRESS", "").lower()
    if setting:
        return setting not in {"0", "false", "no", "off"}
    return sys.stderr.isatty()


def progress(iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterable[T]:
    """Wrap ``iterable`` in a bar showing count, rate and ETA; the bar disappears when done."""
    return tqdm(
        iterable,
        desc=desc,
        total=total,
        unit=unit,
        leave=False,
        disable=not progress_enabled(),
        dynamic_ncols=True,
        mininterval=0.5,
    )
