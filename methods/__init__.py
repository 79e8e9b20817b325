"""Built-in OOD detection methods, one file each (installed as ``oodbench.methods``)."""
