"""oodbench: a comparative benchmark suite for out-of-distribution detection on image classifiers.

The Python API (``oodbench.run``, ``oodbench.plan``, ``oodbench.outputs``, ``oodbench.representations``,
``oodbench.load_results``) is loaded on first use, so ``import oodbench.api`` (the plugin contract) stays cheap.
"""

__version__ = "0.1.0"

_API = {"run", "plan", "outputs", "representations", "load_results", "RunResult"}


def __getattr__(name: str):
    if name in _API:
        from oodbench import runs

        return getattr(runs, name)
    raise AttributeError(f"module 'oodbench' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
