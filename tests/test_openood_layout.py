"""OpenOOD v1.5's data layout (``benchmark_imglist/<benchmark>/*.txt`` over ``images_classic/`` and
``images_largescale/``), read as it is, with small files in the real format."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from helpers import store_rows
from openood_tree import make_openood_tree
from PIL import Image

from oodbench.cli import main
from oodbench.data.imglist import ImageListSource, parse_image_list
from oodbench.data.source import ImageFormat, SourceContext
from oodbench.errors import DataError
from oodbench.hashing import DigestMemo
from oodbench.registry import build_registry


def make_openood_cifar10(root: Path) -> Path:
    """OpenOOD's CIFAR-10 benchmark in its layout: all ten classes (4 val and test images each, 12 for training)
    and 12 images per OOD list."""
    return make_openood_tree(root, "cifar10", classes=10, train_per_class=12, per_class=4, per_set=12)


def _ctx(root: Path) -> SourceContext:
    return SourceContext(data_root=root, download=False, digests=DigestMemo(root / "digests.json"))


def test_the_four_benchmarks_are_registered_with_openoods_grouping():
    registry = build_registry()
    cifar10 = registry.dataset("openood-cifar10")
    assert cifar10.num_classes == 10 and set(cifar10.splits) == {"train", "val", "test"}
    assert cifar10.near_ood == ("openood-cifar10-cifar100", "openood-cifar10-tin")
    assert cifar10.far_ood == ("openood-cifar10-mnist", "openood-cifar10-svhn", "openood-cifar10-texture",
                               "openood-cifar10-places365")
    for name in ("imagenet200", "imagenet"):
        spec = registry.dataset(f"openood-{name}")
        assert spec.near_ood == (f"openood-{name}-ssb-hard", f"openood-{name}-ninco")
        assert spec.far_ood == (f"openood-{name}-inaturalist", f"openood-{name}-textures", f"openood-{name}-openimage-o")
        assert registry.dataset(f"openood-{name}-textures").splits["test"].image_dir == "images_classic"
    assert registry.dataset("openood-cifar100").num_classes == 100
    assert registry.dataset("openood-cifar100-tin").splits["test"].list_file == "benchmark_imglist/cifar100/test_tin.txt"
    assert registry.dataset("openood-cifar10-tin").splits["test"].count == 7_793  # OpenOOD's filtered subset


def test_a_list_is_read_in_its_order_with_its_labels(tmp_path):
    root = make_openood_cifar10(tmp_path)
    source = build_registry().dataset("openood-cifar10").splits["val"]
    images = source.read(_ctx(root), ImageFormat(32, 3))
    assert len(images) == 40 and images.labels.tolist() == [label for label in range(10) for _ in range(4)]
    assert images.names[0].endswith("images_classic/cifar10/val_cifar10/cifar10_val_cifar10_0.png")
    mnist = build_registry().dataset("openood-cifar10-mnist").splits["test"].read(_ctx(root), ImageFormat(32, 3))
    assert set(mnist.labels.tolist()) == {-1} and mnist.load(0).size == (28, 28)


def test_the_identity_follows_the_list_and_the_images(tmp_path):
    root = make_openood_cifar10(tmp_path)
    source = build_registry().dataset("openood-cifar10").splits["test"]
    before = source.identity(_ctx(root))
    Image.new("RGB", (31, 31)).save(root / "images_classic/cifar10/test_cifar10/cifar10_test_cifar10_13.png")
    replaced = source.identity(_ctx(root))
    assert replaced != before
    listed = root / "benchmark_imglist/cifar10/test_cifar10.txt"
    listed.write_text("\n".join(listed.read_text().splitlines()[1:]) + "\n")
    assert source.identity(_ctx(root)) != replaced


def test_missing_files_name_the_file_and_how_to_get_it(tmp_path):
    root = make_openood_cifar10(tmp_path)
    source = build_registry().dataset("openood-cifar10-tin").splits["test"]
    (root / "images_classic/tin/test_tin/tin_test_tin_5.JPEG").unlink()
    with pytest.raises(DataError, match=r"images_classic/tin/test_tin/tin_test_tin_5.JPEG \(named by benchmark_imglist/cifar10/test_tin.txt\)") as error:
        source.identity(_ctx(root))
    assert "scripts/download/download.py --contents datasets --datasets ood_v1.5" in error.value.fix
    assert "'tin' (https://drive.google.com/uc?id=1PZ-ixyx52U989IKsMA2OT-24fToTrelC)" in error.value.fix
    with pytest.raises(DataError, match="image list benchmark_imglist/cifar100/test_tin.txt not found"):
        build_registry().dataset("openood-cifar100-tin").splits["test"].identity(_ctx(root))


@pytest.mark.parametrize("line, problem", [("cifar10/a.png airplane", "not '<image path> <integer label>'"),
                                           ("/etc/passwd 0", "leaves the image folder"),
                                           ("../secret.png 0", "leaves the image folder")])
def test_a_malformed_list_line_is_named(tmp_path, line, problem):
    listed = tmp_path / "list.txt"
    listed.write_text(f"cifar10/ok.png 1\n\n{line}\n")
    with pytest.raises(DataError, match=f"list.txt, line 3: .*{problem}"):
        parse_image_list(listed)


def test_a_partial_copy_is_read_and_noted(tmp_path):
    root = make_openood_cifar10(tmp_path)
    images = ImageListSource("benchmark_imglist/cifar10/test_tin.txt", "images_classic", "get it", count=7_793,
                             labelled=False).read(_ctx(root), ImageFormat(32, 3))
    assert len(images) == 12 and images.notes == ["benchmark_imglist/cifar10/test_tin.txt lists 12 images; the release lists 7793"]


def test_a_run_on_the_openood_layout_reports_near_and_far(tmp_path, capsys):
    root = make_openood_cifar10(tmp_path / "openood")
    code = main(["run", "--preset", "smoke", "--id", "openood-cifar10", "--data-root", str(root), "--results",
                 str(tmp_path / "results"), "--methods", "msp,energy", "--cache-dir", str(tmp_path / "cache")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Near-OOD average" in out and "Far-OOD average" in out
    rows = [dict(r) for r in store_rows(tmp_path / "results")]
    assert {r["ood_dataset"] for r in rows} == {"openood-cifar10-cifar100", "openood-cifar10-tin", "openood-cifar10-mnist",
                                                "openood-cifar10-svhn", "openood-cifar10-texture", "openood-cifar10-places365"}
    assert {r["status"] for r in rows} == {"ok"} and len(rows) == 12
    with sqlite3.connect(tmp_path / "results" / "oodbench.sqlite") as connection:
        provenance = json.loads(connection.execute("SELECT provenance FROM runs").fetchone()[0])
    assert provenance["datasets"]["openood-cifar10-tin/test"]["notes"] == [
        "benchmark_imglist/cifar10/test_tin.txt lists 12 images; the release lists 7793"]


def test_the_plan_names_every_missing_file_and_how_to_get_it(tmp_path, capsys):
    assert main(["plan", "--preset", "smoke", "--id", "openood-cifar10", "--data-root", str(tmp_path), "--methods", "msp"]) == 0
    out = capsys.readouterr().out
    missing = out[out.index("missing data"):]
    for list_name in ("train_cifar10", "test_cifar10", "test_cifar100", "test_tin", "test_mnist", "test_svhn", "test_texture",
                      "test_places365"):
        assert f"image list benchmark_imglist/cifar10/{list_name}.txt not found" in missing
    for archive in ("cifar10", "cifar100", "tin", "mnist", "svhn", "texture", "places365"):
        assert f"fix: unpack OpenOOD's archives '{archive}' (https://drive.google.com/uc?id=" in missing


def test_a_catalog_registers_an_image_list(tmp_path):
    from oodbench.data.catalog import load_catalog
    from oodbench.errors import ConfigError

    make_openood_cifar10(tmp_path / "openood")
    listed = tmp_path / "openood/benchmark_imglist/cifar10/test_cifar10.txt"
    digest = DigestMemo(tmp_path / "d.json").digest(listed)
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(f"""
[datasets.mine]
role = "id"
num_classes = 10
[datasets.mine.splits.test]
list = "openood/benchmark_imglist/cifar10/test_cifar10.txt"
images = "openood/images_classic"
sha256 = "{digest}"
[datasets.mine-tin]
role = "ood"
[datasets.mine-tin.splits.test]
list = "openood/benchmark_imglist/cifar10/test_tin.txt"
images = "openood/images_classic"
""")
    specs = {spec.name: spec for spec in load_catalog(catalog)}
    ctx = SourceContext(tmp_path / "elsewhere", False, DigestMemo(tmp_path / "d.json"))  # paths do not follow the data root
    test = specs["mine"].splits["test"].read(ctx, ImageFormat(32, 3))
    assert len(test) == 40 and test.labels.tolist()[:5] == [0] * 4 + [1]
    assert set(specs["mine-tin"].splits["test"].read(ctx, ImageFormat(32, 3)).labels.tolist()) == {-1}
    listed.write_text(listed.read_text() + "cifar10/test_cifar10/cifar10_test_cifar10_0.png 0\n")  # a listed file, twice
    with pytest.raises(DataError, match="a different version of the list"):
        specs["mine"].splits["test"].identity(ctx)
    catalog.write_text(catalog.read_text().replace('images = "openood/images_classic"\nsha256', 'sha256', 1))
    with pytest.raises(ConfigError, match="an image list needs 'list' and 'images'"):
        load_catalog(catalog)


def test_the_openood_protocol_runs_its_benchmark_tunes_on_its_validation_data_and_prints_its_table(tmp_path, capsys):
    root = make_openood_cifar10(tmp_path / "openood")
    code = main(["run", "--preset", "smoke", "--protocol", "openood-v1.5", "--id", "cifar10", "--data-root", str(root),
                 "--results", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache"), "--tune",
                 "--methods", "msp,odin,klmatching,vim", "--ood", "openood-cifar10-tin,openood-cifar10-mnist"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(r"protocol openood-v1\.5 \(version [0-9a-f]{12}\); AUROC, FPR@95TPR\(OOD\+\)", out)
    assert "FPR@95 takes OOD as the positive class" in out
    header = next(line for line in out.splitlines() if "FPR@95TPR(OOD+)" in line and "Acc." in line)
    assert header.split()[0] == "Acc."  # ID accuracy leads, as in OpenOOD's tables
    assert "tune: odin chose" in out and "openood-cifar10/val vs openood-cifar10-val-tin/test" in out
    rows = {(r["method"], r["ood_dataset"]): dict(r) for r in store_rows(tmp_path / "results")}
    assert {r["id_dataset"] for r in rows.values()} == {"openood-cifar10"}
    odin = json.loads(rows[("odin", "openood-cifar10-tin")]["protocol"])
    assert odin["name"] == "openood-v1.5" and odin["metrics"] == [["auroc", "AUROC"], ["fpr95_ood_pos", "FPR@95TPR(OOD+)"]]
    assert odin["tuned"]["validation"]["id"] == "openood-cifar10/val" and len(odin["tuned"]["grid"]) == 8
    assert json.loads(rows[("klmatching", "openood-cifar10-mnist")]["protocol"])["fit_split"] == "openood-cifar10/val"
    assert json.loads(rows[("vim", "openood-cifar10-mnist")]["params"])["d"] in (256, 1000)
    assert main(["run", "--preset", "smoke", "--protocol", "openood-v1.5", "--id", "cifar10", "--data-root", str(root), "--tune",
                 "--ood", "openood-cifar10-val-tin", "--results", str(tmp_path / "results")]) == 2
    assert "is the validation OOD set openood-cifar10 tunes on" in capsys.readouterr().err


def _released_checkpoint(backbone: str, classes: int, path: Path) -> list[str]:
    """A checkpoint of ``backbone`` in the format its publisher releases, as ``--checkpoint`` options: OpenOOD's
    ``best.ckpt`` (a bare state dict in its parameter names) or a torchvision weights file (torchvision's names)."""
    import torch
    import torchvision.models as tvm

    from oodbench.backbones.openood_resnet import ResNet18_32x32, ResNet18_224x224

    torch.manual_seed(0)
    network = {"resnet18-32x32": ResNet18_32x32, "resnet18-224x224": ResNet18_224x224,
               "resnet50": lambda n: tvm.resnet50(num_classes=n)}[backbone](classes)
    torch.save(network.state_dict(), path)
    return ["--backbone", backbone, "--checkpoint", str(path)]


#: per benchmark: its backbone on the leaderboard, the tree's size, and the methods of the default run (all: every post-hoc one)
BENCHMARK_RUNS = {
    "cifar10": ("resnet18-32x32", 10, {"classes": 10, "train_per_class": 6, "per_class": 2, "per_set": 6}, None),
    "cifar100": ("resnet18-32x32", 100, {"classes": 25, "train_per_class": 2, "per_class": 1, "per_set": 6}, None),
    "imagenet200": ("resnet18-224x224", 200, {"classes": 2, "train_per_class": 26, "per_class": 2, "per_set": 4},
                    "msp,energy,knn,vim,klmatching,rmd"),
    "imagenet": ("resnet50", 1000, {"classes": 2, "train_per_class": 26, "per_class": 2, "per_set": 4}, "msp,knn,vim,klmatching"),
}


def _run_benchmark(tmp_path: Path, benchmark: str, every_method: bool, capsys) -> tuple[str, list[dict]]:
    backbone, classes, sizes, methods = BENCHMARK_RUNS[benchmark]
    root = make_openood_tree(tmp_path / "openood", benchmark, **sizes)
    full_spectrum = ["--full-spectrum"] if benchmark != "cifar100" else []  # OpenOOD lists no CIFAR-100 covariate shift
    # every post-hoc method, NNGuide with 10 neighbours: the tree's 50-60 training images hold fewer than its default 100
    chosen = ["--param", "nnguide.k=10"] if every_method or methods is None else ["--methods", methods]
    code = main(["run", "--preset", "smoke", "--protocol", "openood-v1.5", "--id", benchmark, "--data-root", str(root),
                 *_released_checkpoint(backbone, classes, tmp_path / "best.ckpt"), *full_spectrum, *chosen,
                 "--results", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache")])
    out = capsys.readouterr().out
    assert code == 0, out
    return out, [dict(r) for r in store_rows(tmp_path / "results")]


def _check_benchmark_run(benchmark: str, out: str, rows: list[dict]) -> None:
    registry = build_registry()
    spec = registry.dataset(f"openood-{benchmark}")
    assert {r["ood_dataset"] for r in rows} == set(spec.near_ood + spec.far_ood)
    assert {r["status"] for r in rows} == {"ok"}, [r["error"] for r in rows if r["status"] != "ok"]
    assert "Near-OOD average" in out and "Far-OOD average" in out and "FPR@95TPR(OOD+)" in out
    protocol = json.loads(rows[0]["protocol"])
    assert protocol["name"] == "openood-v1.5" and rows[0]["checkpoint_origin"].startswith("file:")
    if spec.covariate_shift:  # full-spectrum: the shifted sets are on the ID side and their accuracy is reported
        assert protocol["full_spectrum"] == [f"{name}/test" for name in spec.covariate_shift]
        assert set(json.loads(rows[0]["csid_accuracy"])) == set(spec.covariate_shift)
        header = out[out.index("protocol openood-v1.5 (version "):].splitlines()[1]
        assert all(name in header for name in spec.covariate_shift)  # their accuracy columns head the table


@pytest.mark.parametrize("benchmark", ["cifar10", "cifar100", "imagenet200", "imagenet"])
def test_each_benchmark_runs_under_the_openood_protocol_from_released_checkpoints(benchmark, tmp_path, capsys):
    """OpenOOD's four benchmarks in its data layout, full-spectrum sets included, each from a checkpoint in its
    released format; the CIFAR runs take every post-hoc method, the ImageNet ones (224 px on a CPU) a few."""
    out, rows = _run_benchmark(tmp_path, benchmark, False, capsys)
    _check_benchmark_run(benchmark, out, rows)


@pytest.mark.slow
@pytest.mark.parametrize("benchmark", ["imagenet200", "imagenet"])
def test_every_post_hoc_method_runs_on_the_imagenet_benchmarks(benchmark, tmp_path, capsys):
    out, rows = _run_benchmark(tmp_path, benchmark, True, capsys)
    _check_benchmark_run(benchmark, out, rows)
    registry = build_registry()
    post_hoc = {name for name, cls in registry.methods.items() if not cls(cls.Params()).capabilities().trains}
    assert {r["method"] for r in rows} == post_hoc


def test_the_plan_names_every_missing_file_of_every_benchmark(tmp_path, capsys):
    """With nothing downloaded, ``oodbench plan`` names every list of each benchmark and the archive it comes from."""
    registry = build_registry()
    for benchmark, (backbone, *_rest) in BENCHMARK_RUNS.items():
        spec = registry.dataset(f"openood-{benchmark}")
        full_spectrum = ["--full-spectrum"] if spec.covariate_shift else []
        assert main(["plan", "--preset", "smoke", "--protocol", "openood-v1.5", "--id", benchmark, "--data-root", str(tmp_path),
                     "--backbone", backbone, "--methods", "msp,knn", *full_spectrum]) == 0
        out = capsys.readouterr().out
        missing = out[out.index("missing data"):]
        wanted = [spec, *map(registry.dataset, spec.near_ood + spec.far_ood + spec.covariate_shift)]
        for dataset in wanted:
            for split, source in dataset.splits.items():
                if split in ("test", "train"):
                    assert f"image list {source.list_file} not found" in missing, (benchmark, source.list_file)
        assert missing.count("fix: unpack OpenOOD's archives") >= len(wanted)
