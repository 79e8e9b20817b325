"""The public leaderboard: the static site from several stores (in headless Chromium), ``oodbench verify`` and
sealed submissions, on the tiny catalog with the smoke preset."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from fakes import zip_folder
from helpers import make_tiny_catalog, run_tiny, store_rows

from oodbench.board.site import build_site
from oodbench.board.sources import open_source
from oodbench.cli import main
from oodbench.errors import ConfigError
from oodbench.report.browser import find_chromium

OUTSIDE_METHOD = '''
"""Written outside the project: the negated largest cosine similarity to the ID training class means."""

import torch

from oodbench.api import Method, Reads


class MaxCosine(Method):
    name = "maxcos"
    citation = "a submission test"
    reads = frozenset({Reads.FEATURES})
    fits = True

    def fit(self, train):
        features = torch.nn.functional.normalize(train.features.float().cpu(), dim=1)
        labels = train.present_labels.cpu()
        means = torch.stack([features[labels == c].mean(0) for c in range(int(labels.max()) + 1)])
        return {"means": torch.nn.functional.normalize(means, dim=1)}

    def score(self, data):
        features = torch.nn.functional.normalize(data.features.float().cpu(), dim=1)
        return -(features @ self.state["means"].T).max(dim=1).values
'''


@pytest.fixture(scope="module")
def three_stores(tmp_path_factory) -> dict[str, Path]:
    """Smoke runs of two protocols (the clean one with two seeds) and a sealed submission, each in its store."""
    root = tmp_path_factory.mktemp("board")
    catalog = make_tiny_catalog(root / "data")
    cache = ["--cache-dir", str(root / "cache")]
    assert run_tiny(catalog, root / "clean", "--methods", "msp,energy", "--seeds", "0,1", "--ood", "tiny-ood,gaussian", *cache) == 0
    assert run_tiny(catalog, root / "notebook", "--methods", "msp,energy", "--protocol", "mim-notebook",
                    "--ood", "tiny-ood,gaussian", *cache) == 0
    outside = root / "elsewhere" / "maxcos.py"
    outside.parent.mkdir()
    outside.write_text(OUTSIDE_METHOD)
    assert main(["submit", str(outside), "--preset", "smoke", "--id", "tiny", "--ood", "tiny-ood,gaussian", "--catalog", str(catalog),
                 "--out", str(root / "submission"), *cache]) == 0
    return {"catalog": catalog, "clean": root / "clean", "notebook": root / "notebook", "submission": root / "submission",
            "cache": root / "cache", "root": root}


def test_the_site_has_a_table_per_protocol_version_with_intervals_links_and_the_submission(three_stores, tmp_path):
    index = build_site([three_stores[k] for k in ("clean", "notebook", "submission")], tmp_path / "site", replicates=100)
    html = index.read_text()
    titles = re.findall(r"<h2>(.*?)</h2>", html)
    assert len(titles) == 2 and {re.search(r"protocol (\S+)", t).group(1) for t in titles} == {"clean", "mim-notebook"}
    assert all(re.search(r"version [0-9a-f]{12}", t) for t in titles)
    clean = html[html.index("protocol clean"):html.index("protocol mim-notebook")] if html.index("protocol clean") < html.index(
        "protocol mim-notebook") else html[html.index("protocol clean"):]
    assert "maxcos" in clean and "submitted" in clean  # the submission's version is the clean protocol's
    rows = re.findall(r'<tr data-run="([^"]+)">', html)
    assert len(rows) == 5  # msp and energy of each run, and the submitted method
    assert re.search(r'<td data-sort="2" title="seeds 0, 1;', html)  # the two-seed entries say so
    assert len(re.findall(r'<small class="ci">\[0\.\d{3}, [01]\.\d{3}\]</small>', html)) >= 5 * 2  # AUROC and FPR intervals
    for run_id in set(rows):
        assert (tmp_path / "site" / "runs" / run_id / "report.html").is_file()
        provenance = json.loads((tmp_path / "site" / "runs" / run_id / "provenance.json").read_text())
        assert provenance["run"]["run_id"] == run_id and provenance["protocols"][0]["version"]
    assert "not re-run here" not in html  # no published numbers for the tiny set
    assert "http://" not in html and "https://" not in html  # nothing fetched


@pytest.mark.skipif(find_chromium() is None, reason="Chromium is not installed (.ci/run installs Debian's chromium)")
def test_the_site_sorts_a_column_and_follows_a_link_to_a_report_in_chromium(three_stores, tmp_path):
    from oodbench.report.browser import browse

    index = build_site([three_stores[k] for k in ("clean", "notebook", "submission")], tmp_path / "site", replicates=50)
    column = "Array.from(document.querySelectorAll('table.board')[0].tHead.rows[0].cells).findIndex(c => c.textContent.includes('AUROC (all'))"
    values = (f"Array.from(document.querySelectorAll('table.board')[0].tBodies[0].rows).map(r => Number(r.cells[{column}].dataset.sort))")
    with browse(index) as tab:
        assert tab.record().errors == [] and tab.record().network_requests == []
        first = tab.evaluate(values)
        assert first == sorted(first, reverse=True)  # best first as built
        tab.evaluate(f"document.querySelectorAll('table.board')[0].tHead.rows[0].cells[{column}].querySelector('button').click()")
        assert tab.evaluate(values) == sorted(first)  # a click sorts ascending
        assert tab.evaluate(f"document.querySelectorAll('table.board')[0].tHead.rows[0].cells[{column}].getAttribute('aria-sort')") == "ascending"
        tab.evaluate("document.querySelectorAll('table.board')[0].tHead.rows[0].cells[0].querySelector('button').click()")
        names = tab.evaluate("Array.from(document.querySelectorAll('table.board')[0].tBodies[0].rows).map(r => r.cells[0].dataset.sort)")
        assert names == sorted(names, reverse=True)
        target = tab.evaluate("(() => { const a = Array.from(document.querySelectorAll('table.board a')).find(a => a.textContent === 'report'); "
                              "a.click(); return a.href; })()", settle=2.0)
        assert tab.evaluate("location.href") == target and tab.evaluate("document.title").startswith("oodbench report")
        assert tab.evaluate("document.querySelectorAll('table').length") > 0
        assert tab.record().errors == [] and tab.record().network_requests == []


def test_verify_reproduces_a_run_and_marks_it_on_the_site(three_stores, tmp_path, capsys):
    code = main(["verify", "--results", str(three_stores["clean"]), "--cells", "all"])  # the run recorded its catalog
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(r"run \S+: 8/8 cells reproduced", out)  # 2 methods x 2 OOD sets x 2 seeds
    checks = [dict(r) for r in store_rows(three_stores["clean"], "verifications")]
    assert len(checks) == 8 and {c["verdict"] for c in checks} == {"reproduced"} and {c["tolerance"] for c in checks} == {0.0}
    html = build_site([three_stores["clean"]], tmp_path / "site", replicates=20).read_text()
    assert html.count("verified (4/4 cells)") == 2
    import pandas as pd

    table = pd.read_csv(tmp_path / "site" / "leaderboard.csv")
    assert list(table["cells_reproduced"]) == [4, 4] and set(table["method"]) == {"msp", "energy"}
    assert (table["auroc_ci_low"] <= table["auroc"]).all() and (table["auroc"] <= table["auroc_ci_high"]).all()
    run = table["run_id"].iloc[0]
    provenance = json.loads((tmp_path / "site" / "runs" / run / "provenance.json").read_text())
    assert len(provenance["verifications"]) == 8 and {v["verdict"] for v in provenance["verifications"]} == {"reproduced"}


def test_a_submission_is_re_checked_by_verify_and_refused_when_its_method_file_changed(three_stores, tmp_path, capsys):
    bundle = tmp_path / "bundle"
    shutil.copytree(three_stores["submission"], bundle)
    entry = json.loads((bundle / "entry.json").read_text())
    assert entry["methods"] == ["maxcos"] and entry["sealed"] and entry["cells_ok"] == 2
    rows = store_rows(bundle / "results")
    assert {json.loads(r["protocol"])["sealed"] for r in rows} == {True}
    assert main(["verify", "--results", str(bundle), "--catalog", str(three_stores["catalog"])]) == 0
    assert re.search(r"2/2 cells reproduced", capsys.readouterr().out)
    (bundle / "method" / "maxcos.py").write_text(OUTSIDE_METHOD.replace("max(dim=1)", "min(dim=1)"))
    with pytest.raises(ConfigError, match="does not have the digest"):
        open_source(bundle)


def test_verify_names_a_data_file_changed_after_the_run(tmp_path, capsys):
    catalog = make_tiny_catalog(tmp_path / "data")
    text = catalog.read_text()
    declared = re.search(r'(\[datasets\.tiny-ood\.splits\.test\]\npath = "ood\.zip"\n)(sha256 = "[0-9a-f]+"\n)', text)
    catalog.write_text(text.replace(declared.group(0), declared.group(1)))  # a catalog that declares no checksum
    cache = ["--cache-dir", str(tmp_path / "cache")]
    assert run_tiny(catalog, tmp_path / "results", "--methods", "msp,knn", "--ood", "tiny-ood", *cache) == 0
    zip_folder(tmp_path / "data" / "ood.zip", 40, None, seed=99)  # the same file name, other images
    code = main(["verify", "--results", str(tmp_path / "results"), "--catalog", str(catalog)])
    out = capsys.readouterr().out
    assert code == 1
    assert re.search(r"data changed: tiny-ood/test content hash [0-9a-f]+ -> [0-9a-f]+ \(read from .*ood\.zip", out)
    assert "0/2 cells reproduced" in out
    catalog.write_text(text)  # the catalog's checksum is the one of the file the run read
    code = main(["verify", "--results", str(tmp_path / "results"), "--catalog", str(catalog)])
    out = capsys.readouterr().out
    assert code == 1 and re.search(r"data changed: [^\n]*sha256 of [^\n]*ood\.zip[^\n]* is [0-9a-f]+, expected", out), out


def test_full_spectrum_rows_and_other_protocol_versions_get_tables_of_their_own():
    import pandas as pd

    from oodbench.board.entries import table_key

    def row(**protocol):
        return pd.Series({"protocol": json.dumps({"name": "openood-v1.5", "version": "0123456789ab", **protocol}),
                          "id_dataset": "cifar10", "id_stands_for": "cifar10", "backbone": "resnet18-32x32"})

    plain, shifted = table_key(row()), table_key(row(full_spectrum=["cifar10-c"]))
    assert plain != shifted and "full-spectrum" in shifted.title and "full-spectrum" not in plain.title
    assert table_key(row(version="ba9876543210")) != plain and table_key(row()) == plain
    assert plain.stands_for == "" and "(version 0123456789ab)" in plain.title


def test_verify_says_when_cells_are_re_executed_on_other_hardware():
    from oodbench.board.verify import _hardware_change

    run = ({"compute": "cuda:0 (bf16)"}, {"gpu": "NVIDIA H100 80GB HBM3", "cpu": "AMD EPYC", "torch_threads": 16})
    here = {"compute": "cpu (bf16, channels-last, compiled training)", "hardware": {"cpu": "Intel Xeon", "torch_threads": 2}}
    assert _hardware_change(*run, here) == ("other hardware: run on cuda:0 (bf16) on NVIDIA H100 80GB HBM3, 16 threads, "
                                            "re-executed on cpu (bf16, channels-last, compiled training) on Intel Xeon, 2 threads")
    same = {"compute": run[0]["compute"], "hardware": run[1]}
    assert _hardware_change(*run, same) == "" and _hardware_change({}, {}, here) == ""  # an old run recorded no compute


def test_attacked_cells_get_tables_of_their_own_and_incomplete_entries_say_which_sets_they_average(tiny_catalog, tmp_path):
    assert run_tiny(tiny_catalog, tmp_path / "results", "--methods", "msp,energy", "--ood", "tiny-ood,gaussian",
                    "--attack", "pgd:eps=4/255,steps=2,step=2/255,target=ood", "--cache-dir", str(tmp_path / "cache")) == 0
    assert run_tiny(tiny_catalog, tmp_path / "results", "--methods", "knn", "--ood", "tiny-ood", "--cache-dir", str(tmp_path / "cache")) == 0
    attacked_run = store_rows(tmp_path / "results", "runs")[0]["run_id"]
    assert main(["verify", attacked_run, "--results", str(tmp_path / "results"), "--cells", "all"]) == 0
    checks = store_rows(tmp_path / "results", "verifications")
    assert "" in {c["attack"] for c in checks} and len({c["attack"] for c in checks}) == 2  # clean and attacked told apart
    assert {c["tolerance"] for c in checks if c["attack"]} == {0.02} and {c["tolerance"] for c in checks if not c["attack"]} == {0.0}
    html = build_site([tmp_path / "results"], tmp_path / "site", replicates=20).read_text()
    titles = re.findall(r"<h2>(.*?)</h2>", html)
    assert len(titles) == 2 and sum("under attack: " in t for t in titles) == 1
    clean = html[html.index(next(t for t in titles if "under attack" not in t)):]
    clean = clean[:clean.index("</table>")]
    assert re.search(r"knn <span class=\"mark\" title=\"averages over tiny-ood only; the table has gaussian, tiny-ood\">1/2 OOD sets", clean)
    assert clean.count("<tr data-run=") == 3  # msp, energy and knn on clean inputs
    attacked = html[html.index(next(t for t in titles if "under attack" in t)):]
    attacked = attacked[:attacked.index("</table>")]
    assert 1 <= attacked.count("<tr data-run=") <= 2  # the methods the attack reaches
    assert attacked.count("verified (2/2 cells)") == attacked.count("<tr data-run=")  # its own cells' checks, not the clean ones


def test_a_path_that_is_neither_a_store_nor_a_bundle_is_named_with_the_fix(tmp_path, capsys):
    assert main(["leaderboard", str(tmp_path / "nothing"), "--out", str(tmp_path / "site")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'nothing'} is neither a results store nor a submission bundle" in err and "fix: pass a results directory" in err
    assert main(["verify", "--results", str(tmp_path / "nothing")]) == 2
