"""Built-in protocols: named ways of producing and reading numbers (installed as ``oodbench.protocols``)."""
