"""Device and precision: where tensors live, in which precision, with which fast paths.

``auto`` picks CUDA, then Apple MPS, then the CPU. ``auto`` precision is a pure function of the
device's capabilities (:func:`auto_precision`):

- CUDA: bfloat16 autocast where the GPU supports it, float16 with loss scaling where it does not;
  channels-last memory and cuDNN autotuning; long trainings compiled. TF32 stays off: under
  autocast the network's products already run in 16 bits, and the float32 products left are the
  final layer and the methods' statistics (covariances, Mahalanobis distances), which need all of
  float32's bits. On an H100, bf16 with TF32 moved RMD's AUROC by 0.012 against float32 where
  bf16 alone (on a CPU, same checkpoint) moved it by 0.0002; rounding the operands of RMD's
  products to TF32's 10 bits, on the CPU, moves it by up to 0.009.
- a CPU with native bfloat16 (AVX512-BF16 or AMX): bfloat16 autocast with channels-last memory
  (about 2.8x faster inference and 1.9x faster training on the 2-core development machine); long
  trainings compiled (about 1.2-1.3x faster steps after half a minute).
- a CPU without it: float32, also with channels-last memory and long trainings compiled. WRN-16-2 in float32 on
  the 2-core development machine (``benchmarks/compiled_training.py --precision fp32``): inference 623 -> 946 img/s
  and training 253 -> 292 img/s with channels-last, 295 compiled (compiling alone: 255); on a 2-core AVX2 EPYC,
  inference 281 -> 332 and training 85 -> 91.
- elsewhere (Apple MPS): float32.

The final linear layer always runs in float32 (``ImageClassifier``), so every logit-reading method
sees full-precision logits. ``--precision`` and ``--no-compile`` override; the choice is recorded
with every result.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ContextManager

import torch

from oodbench.errors import ConfigError

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether the CPU advertises bfloat16 instructions (Linux ``/proc/cpuinfo`` flags)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def auto_precision(device_type: str, cpu_bf16: bool, cuda_bf16: bool) -> str:
    """The precision ``auto`` means on a device with these capabilities."""
    if device_type == "cuda":
        return "bf16" if cuda_bf16 else "fp16"
    if device_type == "cpu" and cpu_bf16:
        return "bf16"
    return "fp32"


def fast_paths(device_type: str, precision: str, compile: bool) -> tuple[bool, bool]:
    """(channels-last memory, compiled long trainings): on CUDA and on CPUs, in every precision (both measured faster
    there, float32 included); not on Apple MPS."""
    accelerated = device_type in ("cuda", "cpu")
    return accelerated, compile and accelerated


@dataclass(frozen=True)
class Compute:
    """The device, the precision and the memory format every stage uses."""

    device: torch.device
    precision: str
    channels_last: bool
    compile: bool = False

    def autocast(self) -> ContextManager:
        """Autocast to the precision's dtype (bf16 / fp16); a no-op in fp32."""
        if self.precision in AUTOCAST_DTYPES:
            return torch.autocast(self.device.type, dtype=AUTOCAST_DTYPES[self.precision])
        return contextlib.nullcontext()

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling for float16 training (a pass-through in any other precision)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    def prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        """Move a module to the device (channels-last memory when enabled)."""
        module = module.to(self.device)
        return module.to(memory_format=torch.channels_last) if self.channels_last else module

    def describe(self) -> str:
        parts = [self.precision] + (["channels-last"] if self.channels_last else [])
        if self.device.type == "cuda":
            parts += ["cudnn autotune"]
        parts += ["compiled training"] if self.compile else []
        return f"{self.device} ({', '.join(parts)})"


class CompiledModule:
    """Calls ``torch.compile(module)``; if compilation fails, says so once and runs ``module`` eagerly.

    Compilation happens at the first call, so a failure there leaves no partial state behind. ``one_batch_size``:
    only batches of the first call's size (the first argument's first dimension) go through the compiled graph;
    any other size (a short last batch) runs eagerly instead of compiling a second graph. A graph compiled with a
    variable batch size would serve every size but gives away most of the gain: WRN-16-2 in bf16 on 2 CPU cores
    trains at 443 img/s eager, 696 compiled for one size, 519 with the batch dimension marked dynamic.
    ``backend``: torch.compile's.
    """

    def __init__(self, module: torch.nn.Module, enabled: bool, one_batch_size: bool = False, backend: str = "inductor") -> None:
        self.module = module
        self.batch_size: int | None = None if one_batch_size else -1
        self.compiled = torch.compile(module, backend=backend) if enabled else None

    def __call__(self, *args, **kwargs):
        if self.compiled is not None and self.batch_size is None:
            self.batch_size = len(args[0])
        if self.compiled is not None and self.batch_size in (-1, len(args[0])):
            try:
                return self.compiled(*args, **kwargs)
            except Exception as error:  # inductor / dynamo failures differ by platform and compiler
                print(f"note: torch.compile failed ({type(error).__name__}: {str(error)[:200]}); training eagerly",
                      file=sys.stderr, flush=True)
                self.compiled = None
        return self.module(*args, **kwargs)


def select_compute(device: str = "auto", precision: str = "auto", compile: bool = True) -> Compute:
    """Resolve ``--device`` and ``--precision`` into a :class:`Compute` (and switch on CUDA's fast paths)."""
    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}", "use auto, cpu, cuda, cuda:N or mps") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available", "use --device cpu")
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}", f"use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        cuda_bf16 = resolved.type == "cuda" and torch.cuda.is_bf16_supported()
        precision = auto_precision(resolved.type, cpu_has_native_bf16(), cuda_bf16)
    if resolved.type == "cuda":  # float32 products stay exact (module docstring)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    channels_last, compiled = fast_paths(resolved.type, precision, compile)
    return Compute(device=resolved, precision=precision, channels_last=channels_last, compile=compiled)
