"""Built-in presets: named defaults of a run (installed as ``oodbench.presets``)."""
