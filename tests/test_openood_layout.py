"""OpenOOD v1.5's data layout (``benchmark_imglist/<benchmark>/*.txt`` over ``images_classic/`` and
``images_largescale/``), read as it is, with small files in the real format."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from helpers import store_rows
from PIL import Image

from oodbench.cli import main
from oodbench.data.imglist import ImageListSource, parse_image_list
from oodbench.data.source import ImageFormat, SourceContext
from oodbench.errors import DataError
from oodbench.hashing import DigestMemo
from oodbench.registry import build_registry


def _image(path: Path, rng: np.random.Generator, size: int = 32, gray: bool = False, tint: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, (size, size) if gray else (size, size, 3), dtype=np.uint8)
    if tint is not None:  # a class the tiny network can learn: its colour
        pixels[..., tint % 3] = 255
    Image.fromarray(pixels).save(path)


def make_openood_cifar10(root: Path, per_class: int = 4, per_ood: int = 12, seed: int = 0) -> Path:
    """OpenOOD's CIFAR-10 benchmark in its layout: lists (``path label``) and the images they name, under the
    folder names of OpenOOD's archives (``images_classic/cifar10``, ``tin``, ``mnist``, ...)."""
    rng = np.random.default_rng(seed)
    lists = root / "benchmark_imglist" / "cifar10"
    lists.mkdir(parents=True)
    for split, count in (("train", per_class * 3), ("val", per_class), ("test", per_class * 2)):
        lines = []
        for label in range(10):
            for i in range(count):
                name = f"cifar10/{'train' if split == 'train' else 'test'}/{label}_{split}_{i}.png"
                _image(root / "images_classic" / name, rng, tint=label)
                lines.append(f"{name} {label}")
        (lists / f"{split}_cifar10.txt").write_text("\n".join(lines) + "\n")
    for list_name, folder, gray, size in (("test_cifar100", "cifar100", False, 32), ("test_tin", "tin", False, 64),
                                          ("val_tin", "tin", False, 64), ("test_mnist", "mnist", True, 28),
                                          ("test_svhn", "svhn", False, 32), ("test_texture", "texture", False, 48),
                                          ("test_places365", "places365", False, 40)):
        names = [f"{folder}/{list_name}_{i}.{'JPEG' if folder == 'tin' else 'png'}" for i in range(per_ood)]
        for name in names:
            _image(root / "images_classic" / name, rng, size=size, gray=gray)
        (lists / f"{list_name}.txt").write_text("".join(f"{name} -1\n" for name in names))
    return root


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
    assert images.names[0].endswith("images_classic/cifar10/test/0_val_0.png")
    mnist = build_registry().dataset("openood-cifar10-mnist").splits["test"].read(_ctx(root), ImageFormat(32, 3))
    assert set(mnist.labels.tolist()) == {-1} and mnist.load(0).size == (28, 28)


def test_the_identity_follows_the_list_and_the_images(tmp_path):
    root = make_openood_cifar10(tmp_path)
    source = build_registry().dataset("openood-cifar10").splits["test"]
    before = source.identity(_ctx(root))
    _image(root / "images_classic/cifar10/test/3_test_1.png", np.random.default_rng(1), size=31)
    replaced = source.identity(_ctx(root))
    assert replaced != before
    listed = root / "benchmark_imglist/cifar10/test_cifar10.txt"
    listed.write_text("\n".join(listed.read_text().splitlines()[1:]) + "\n")
    assert source.identity(_ctx(root)) != replaced


def test_missing_files_name_the_file_and_how_to_get_it(tmp_path):
    root = make_openood_cifar10(tmp_path)
    source = build_registry().dataset("openood-cifar10-tin").splits["test"]
    (root / "images_classic/tin/test_tin_5.JPEG").unlink()
    with pytest.raises(DataError, match=r"images_classic/tin/test_tin_5.JPEG \(named by benchmark_imglist/cifar10/test_tin.txt\)") as error:
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
    assert len(test) == 80 and test.labels.tolist()[:9] == [0] * 8 + [1]
    assert set(specs["mine-tin"].splits["test"].read(ctx, ImageFormat(32, 3)).labels.tolist()) == {-1}
    listed.write_text(listed.read_text() + "cifar10/test/0_test_0.png 0\n")
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
    assert "protocol openood-v1.5; AUROC, FPR@95TPR(OOD+)" in out and "FPR@95 takes OOD as the positive class" in out
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
