"""Data hygiene through the CLI: a run checks its splits, flags the cells a finding concerns and
reports it; ``oodbench data overlap`` checks any two sets."""

from __future__ import annotations

import io
import re
import zipfile
from html import unescape

from helpers import run_tiny, sha256, store_rows
from PIL import Image

from oodbench.cli import main

PLANTED = 6


def _plant_copies(catalog) -> None:
    """Put upscaled copies of the first OOD images (half of them gray) into the auxiliary archive,
    and declare one source for both sets."""
    data = catalog.parent
    with zipfile.ZipFile(data / "ood.zip") as archive:
        names = sorted(archive.namelist())[:PLANTED]
        images = [Image.open(io.BytesIO(archive.read(name))).convert("RGB") for name in names]
    with zipfile.ZipFile(data / "aux.zip", "a") as archive:
        for i, image in enumerate(images):
            copy = image.resize((48, 48), Image.BICUBIC)
            buffer = io.BytesIO()
            (copy.convert("L").convert("RGB") if i % 2 else copy).save(buffer, format="PNG")
            archive.writestr(f"copy{i}.png", buffer.getvalue())
    text = catalog.read_text()
    old = text.split('path = "aux.zip"\nsha256 = "')[1].split('"')[0]
    text = text.replace(old, sha256(data / "aux.zip")).replace("count = 60", f"count = {60 + PLANTED}")
    for name in ("tiny-aux", "tiny-ood"):
        text = text.replace(f'[datasets.{name}]\nrole = "', f'[datasets.{name}]\nsource = "tiny-photos"\nrole = "')
    catalog.write_text(text)


def test_a_run_flags_the_cells_its_checks_concern_and_reports_them(tiny_catalog, tmp_path, capsys):
    _plant_copies(tiny_catalog)
    assert run_tiny(tiny_catalog, tmp_path / "results", "--methods", "msp,oe", "--aux", "tiny-aux") == 0
    out = capsys.readouterr().out
    finding = f"tiny-aux/train ~ tiny-ood/test: {PLANTED} near-duplicate pair(s), shared source 'tiny-photos'"
    assert f"hygiene: {finding}" in out
    assert "hygiene: tiny/" not in out  # the ID splits share nothing with the OOD set
    rows = {r["method"]: r for r in store_rows(tmp_path / "results")}
    assert rows["oe"]["hygiene"] == finding and rows["msp"]["hygiene"] == ""  # msp trains on no auxiliary set
    assert "\u2021 data hygiene" in out
    assert main(["report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "report"), "--replicates", "50"]) == 0
    html = (tmp_path / "report" / "report.html").read_text()
    assert '<h2 id="hygiene">Data hygiene</h2>' in html and html.count('src="data:image/png;base64,') == 2 * PLANTED
    assert f'title="{finding}">\u2021' in unescape(html)  # the oe cell is marked, with the finding
    assert "\u2021" in next((tmp_path / "report").glob("mim_*.md")).read_text()


def test_data_overlap_between_two_sets_and_a_catalog_without_sources(tiny_catalog, tmp_path, capsys):
    args = ["data", "overlap", "tiny-ood", "tiny-aux", "--catalog", str(tiny_catalog), "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "tiny-ood/test (40 images) ~ tiny-aux/train (60 images): 0 pair(s)" in out and "shared source" not in out
    _plant_copies(tiny_catalog)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "0 pair(s)" not in out and f"{PLANTED} pair(s)" in out and "shared source: both declare 'tiny-photos'" in out
    found = [line for line in out.splitlines() if line.strip().startswith("tiny-ood/test #")]
    assert {int(line.split("#")[1].split()[0]) for line in found} == set(range(PLANTED))
    assert main(["data", "overlap", "tiny-ood", "--catalog", str(tiny_catalog)]) == 2
    assert "compares two datasets" in capsys.readouterr().err


def test_grayscale_digits_against_rgb_photographs(tmp_path, capsys):
    """The demo's digits (gray) against its photo patches (RGB), in a gray and in an RGB format."""
    for backbone in ("cnn-digits", "cnn-small"):
        assert main(["data", "overlap", "digits", "photo-patches", "--backbone", backbone, "--cache-dir", str(tmp_path / "cache")]) == 0
        assert re.search(r"digits/test \(\d+ images\) ~ photo-patches/test \(\d+ images\): 0 pair\(s\)", capsys.readouterr().out)
