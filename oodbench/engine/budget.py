"""What a run will cost, said before it starts, and ``--time-budget``: the backbone's epochs fitted to a duration.

The estimate is ``oodbench plan``'s (measured rates of this device, :mod:`oodbench.engine.estimate`). A preset that
declares how long it is meant to take (:attr:`Preset.expected_s`) gets a warning, with the ways to a shorter run,
when this device would take longer. With a budget, the backbone trains for as many epochs as fit in what the rest of
the run leaves (at least one, at most its recipe's), and every cell of the run names the reduction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from oodbench.errors import ConfigError

#: seconds per unit of a duration's parts
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str) -> float:
    """Seconds of a duration such as ``20m``, ``1h30m``, ``1.5h`` or ``90s``."""
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", text.strip().lower())
    if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([hms])|\s", "", text.strip().lower()):
        raise ConfigError(f"--time-budget {text!r} is not a duration", "write it as e.g. 20m, 1h30m, 1.5h or 90s")
    seconds = sum(float(value) * _UNITS[unit] for value, unit in parts)
    if seconds <= 0:
        raise ConfigError(f"--time-budget {text!r} is not positive", "write it as e.g. 20m")
    return seconds


def clock(seconds: float) -> str:
    """``1h05m``, ``12m30s``, ``40s``."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else (f"{minutes}m{secs:02d}s" if minutes else f"{secs}s")


@dataclass(frozen=True)
class Estimate:
    """The pending work of a plan on this device."""

    #: estimated seconds of every task that will run (those without a measurement count 0)
    seconds: float
    #: tasks without a measurement on this device yet
    unknown: int
    #: seconds of one epoch of every pending backbone training together (0: nothing trains)
    epoch_s: float
    #: epochs of those trainings (None: nothing trains)
    epochs: int | None
    #: a backbone training is pending without a measured rate (its calibration found the machine busy)
    untimed_training: bool = False

    @property
    def rest_s(self) -> float:
        """Seconds of everything but the backbone trainings."""
        return self.seconds - (self.epoch_s * self.epochs if self.epochs else 0.0)

    def describe(self, device: str) -> str:
        training = f", of which training the backbone {clock(self.epoch_s * self.epochs)}" if self.epochs else ""
        unknown = f"; {self.unknown} task(s) never measured here are not counted" if self.unknown else ""
        return f"estimate: {clock(self.seconds)} on {device}{training}{unknown} (oodbench plan lists every task)"


def estimate(plan, throughput) -> Estimate:
    """The pending work of ``plan`` at the rates ``throughput`` measured (measured first by :func:`oodbench.engine.planview.calibrate_plan`)."""
    total, unknown, epoch_s, epochs, untimed = 0.0, 0, 0.0, None, False
    for task in plan.pending():
        seconds = throughput.seconds(task.work)
        trains = task.kind == "checkpoint" and task.work is not None and task.work.passes > 1
        if seconds is None:
            unknown, untimed = unknown + 1, untimed or trains
            continue
        total += seconds
        if trains:
            epoch_s += seconds / task.work.passes
            epochs = task.work.passes
    return Estimate(total, unknown, epoch_s, epochs, untimed)


def budget_epochs(found: Estimate, budget_s: float) -> int | None:
    """The backbone epochs that fit ``budget_s`` with the rest of the run (at least 1, at most the planned ones);
    None when nothing trains."""
    if not found.epochs or found.epoch_s <= 0:
        return None
    return max(1, min(found.epochs, int((budget_s - found.rest_s) // found.epoch_s)))


def slow_warning(found: Estimate, preset: str, expected_s: float, device: str) -> str | None:
    """The warning when this device needs more than ``expected_s`` for the preset, naming shorter ways; else None."""
    if found.seconds <= expected_s:
        return None
    ways = []
    if found.epochs:
        per_epoch = clock(found.epoch_s)
        ways.append(f"--time-budget {clock(expected_s)} (fewer backbone epochs, chosen from this estimate: {per_epoch} each), "
                    f"or --epochs N")
    ways += ["a smaller backbone (--backbone cnn-small; oodbench list backbones)", "a GPU (--device cuda)",
             "a cluster (--executor ray --ray-address HOST:PORT)", "fewer methods (--methods) or test images (--limit)"]
    return (f"warning: preset {preset} is meant to take under {clock(expected_s)}, and this run is estimated at "
            f"{clock(found.seconds)} on {device}. Shorter: " + "; ".join(ways))
