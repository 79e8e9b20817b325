"""Import this before oodbench in a benchmark: oodbench then loads from this checkout, installed or not.

On a machine where oodbench is not installed (a GPU box with its own torch), the checkout goes on
the import path and its plugin folders (``methods/``, ``datasets/``, ``backbones/``, ``presets/``,
``references/``) become ``oodbench.<folder>`` as an install would map them.
"""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import oodbench  # noqa: E402  (only after the checkout is on the path)

# Not installed, or installed from another checkout (an editable install maps the plugin folders by name):
# this checkout's folders come first.
_installed = importlib.util.find_spec("oodbench.methods")
if _installed is None or not Path(_installed.origin or "").resolve().is_relative_to(ROOT):
    oodbench.__path__.append(str(ROOT))
