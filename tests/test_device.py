"""Device and precision choices: a pure function of what the device can do, recorded with results."""

from __future__ import annotations

import pytest
import torch

from oodbench.engine.device import Compute, auto_precision, fast_paths, select_compute
from oodbench.models.classifier import ImageClassifier


@pytest.mark.parametrize("device,cpu_bf16,cuda_bf16,expected", [
    ("cuda", False, True, "bf16"),   # Ampere and newer
    ("cuda", True, False, "fp16"),   # Volta / Turing: float16 with loss scaling
    ("cpu", True, False, "bf16"),    # AVX512-BF16 / AMX
    ("cpu", False, False, "fp32"),
    ("mps", True, True, "fp32"),
])
def test_auto_precision_follows_the_device_capabilities(device, cpu_bf16, cuda_bf16, expected):
    assert auto_precision(device, cpu_bf16, cuda_bf16) == expected


def test_fast_paths_on_gpus_and_cpus_in_every_precision():
    assert fast_paths("cuda", "bf16", compile=True) == (True, True)
    assert fast_paths("cuda", "fp32", compile=False) == (True, False)
    assert fast_paths("cpu", "bf16", compile=True) == (True, True)
    assert fast_paths("cpu", "fp32", compile=True) == (True, True)
    assert fast_paths("cpu", "fp32", compile=False) == (True, False)
    assert fast_paths("mps", "fp32", compile=True) == (False, False)


def test_float16_training_scales_the_loss_and_other_precisions_do_not():
    assert Compute(torch.device("cpu"), "fp16", channels_last=False).grad_scaler().is_enabled()
    assert not Compute(torch.device("cpu"), "bf16", channels_last=True).grad_scaler().is_enabled()
    assert "fp32" in select_compute("cpu", "fp32").describe()


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body, self.fc = torch.nn.Linear(12, 8), torch.nn.Linear(8, 5)

    def features(self, x):
        return self.body(x.flatten(1))


def test_the_final_layer_runs_in_float32_under_autocast():
    torch.manual_seed(0)
    net = Net()
    model = ImageClassifier(net, (0.5,) * 3, (0.25,) * 3)
    pixels = torch.rand(4, 3, 2, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, features = model.forward_with_features(pixels)
    assert logits.dtype == torch.float32 and features.dtype == torch.bfloat16
    torch.testing.assert_close(logits, net.fc(features.float()))


def test_the_inference_batch_size_is_measured_once_per_backbone_and_device(tmp_path, monkeypatch):
    from oodbench.engine import batching
    from oodbench.engine.estimate import Throughput

    compute = select_compute("cpu", "fp32")
    model = ImageClassifier(Net(), (0.5,) * 3, (0.25,) * 3)
    batch = batching.inference_batch_size(model, "net", 2, 3, compute, Throughput(tmp_path / "t.json", "cpu-fp32"))
    assert batch in batching.CPU_SIZES
    monkeypatch.setattr(batching, "_cpu_batch", lambda *args: pytest.fail("measured again"))
    assert batching.inference_batch_size(model, "net", 2, 3, compute, Throughput(tmp_path / "t.json", "cpu-fp32")) == batch


def test_a_calibration_that_got_too_little_cpu_time_is_not_kept(tmp_path, monkeypatch):
    import time

    from oodbench.engine import estimate

    assert estimate._timed(lambda: time.sleep(0.02), 2)[1] < estimate.BUSY_SHARE  # waiting is not computing
    throughput = estimate.Throughput(tmp_path / "t.json", "cpu-fp32")
    model, compute = ImageClassifier(Net(), (0.5,) * 3, (0.25,) * 3), select_compute("cpu", "fp32")
    forward = throughput.key("forward", "net")
    monkeypatch.setattr(estimate, "_timed", lambda step, repeats: (0.5, 0.45))  # another process took half the cores
    reason = estimate.calibrate(throughput, "net", model, 2, 3, 5, compute, batch_size=4)
    assert "machine is busy" in reason and "45%" in reason and throughput.rate(forward) is None
    monkeypatch.setattr(estimate, "_timed", lambda step, repeats: (0.5, 0.99))
    assert estimate.calibrate(throughput, "net", model, 2, 3, 5, compute, batch_size=4) is None
    assert throughput.rate(forward) == 8.0 and throughput.rate(throughput.key("bare-forward", "net")) == 8.0
    throughput.record(forward, 4, 0.1)  # a run's stage: its own rate, beside the bare one
    assert throughput.rate(forward) == 24.0 and throughput.rate(throughput.key("bare-forward", "net")) == 8.0
