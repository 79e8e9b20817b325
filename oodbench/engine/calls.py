"""Plugin code runs on a thread of its own, called with its inputs and nothing else.

A method's ``train()``, ``fit()``, ``score()`` and ``attack_score()`` are called through :func:`plugin_call`:
on a dedicated thread whose stack starts with that call, so no frame a plugin can walk from its own
(``inspect.stack()``) holds the engine's objects: the splits with their labels, their names, their
roles. It answers the honest mistake and the casual peek; code that goes looking through the
interpreter (``sys._current_frames()``, the garbage collector) finds everything, which only
``--sealed``'s separate processes prevent (``engine/sealed.py``).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, ContextManager

import torch

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _pool_for(device: torch.device) -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="oodbench-plugin")
    if device.type == "cuda":  # the current CUDA device is per thread
        _pool.submit(torch.cuda.set_device, device).result()
    return _pool


def plugin_call(device: torch.device, function: Callable[..., Any], *args: Any,
                within: Callable[[], ContextManager] | None = None) -> Any:
    """``function(*args)`` on the plugin thread (``function`` a bound method of a method instance, ``args``
    its inputs), inside ``within()`` when given (autocast is per thread), returning its result or
    raising its exception."""
    if within is None:
        return _pool_for(device).submit(function, *args).result()

    def call() -> Any:
        with within():
            return function(*args)

    return _pool_for(device).submit(call).result()
