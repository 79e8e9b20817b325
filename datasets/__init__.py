"""Built-in dataset families, one file each (installed as ``oodbench.datasets``)."""
