"""Built-in backbones, one file per family (installed as ``oodbench.backbones``)."""
