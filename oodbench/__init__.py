"""oodbench: a comparative benchmark suite for out-of-distribution detection on image classifiers."""

__version__ = "0.1.0"
