"""The four built-in presets. A preset only fills defaults; every value can be overridden.

- ``demo``: what a bare ``oodbench run`` does: scikit-learn's 8x8 digits (classes 0-5 ID, 6-9
  near-OOD), photo patches and noise as far-OOD, a tiny CNN trained on the spot. No network.
- ``smoke``: a six-layer CNN and a few hundred images: seconds. For tests and trying a plugin.
  Its inference batch is fixed at 256; the other presets measure theirs on the device.
- ``quick``: a CPU-sized run: WRN-16-2 trained by oodbench when no checkpoint is given, 2,000
  test images per set. Tens of minutes on 2 cores with native bf16; on a float32-only CPU, hours (``oodbench run`` says
  so before it starts: ``--time-budget`` fits the backbone's epochs to a duration). Methods reduce their own training for it
  (their ``preset_defaults``, e.g. Outlier Exposure's 2 epochs instead of 10).
- ``paper``: the published setting: WRN-40-2 with pytorch-ood's pre-trained CIFAR weights, full
  test sets, original hyperparameters. Meant for a GPU.

Without ``--preset``: ``demo`` when no ``--id`` is given, else ``paper`` on a machine with CUDA
and ``quick`` without.
"""

from oodbench.api import Preset

DEMO = Preset("demo", "digits, a tiny CNN trained on the spot, no network needed (under 2 minutes)",
              backbone="cnn-digits", pretrained=False, train=True, id_dataset="digits", default_for=frozenset({"no-id"}),
              expected_s=120)
SMOKE = Preset("smoke", "a tiny CNN and a few hundred images: seconds",
               backbone="cnn-small", pretrained=False, train=True, epochs=6, limit=300, train_limit=2000,
               batch_size=256, expected_s=60)  # fixed: a run of seconds would spend one measuring the batch size
QUICK = Preset("quick", "CPU-sized: WRN-16-2 trained by oodbench, 2,000 test images per set",
               backbone="wrn-16-2", pretrained=False, train=True, limit=2000, default_for=frozenset({"cpu"}),
               expected_s=3600)
PAPER = Preset("paper", "published setting: WRN-40-2, pytorch-ood's pre-trained weights, full test sets",
               backbone="wrn-40-2", pretrained=True, train=False, default_for=frozenset({"cuda"}))
