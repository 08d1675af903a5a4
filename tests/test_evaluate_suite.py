"""Suites, ablations and the `taxoclip eval` commands, on real photos with tiny stand-ins."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from taxoclip.cli import main
from taxoclip.evaluate import load_task, read_suite

REPO = Path(__file__).resolve().parent.parent
SMALL_FILTER = "group=amphibians,reptiles,nuts"


@pytest.fixture(scope="session")
def second_standin(tmp_path_factory):
    """Another tiny random model (different seed, no bank): a second 'checkpoint' to compare."""
    from taxoclip.models.standin import make_standin

    return make_standin(tmp_path_factory.mktemp("standin-b") / "b", seed=1)


def test_shared_photos_suite_reads_from_any_folder(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    suite = read_suite(REPO / "configs" / "suites" / "shared-photos.yaml")
    assert [t.name for t in suite.tasks] == ["species", "genus", "birds-common"]
    assert suite.metrics == ["zeroshot", "fewshot"] and suite.shots == (1, 5)
    species, genus, birds = (load_task(spec) for spec in suite.tasks)
    assert species.n_classes == 492 and len(species.table) == 3541
    assert genus.n_classes == 342
    assert Path(species.paths[0]).is_file()
    assert 100 < birds.n_classes < 300 and birds.spec.text == "asis"


def test_paper_suite_describes_the_ten_tasks(tmp_path):
    suite = read_suite(REPO / "configs" / "suites" / "bioclip-paper.yaml", data_root=tmp_path)
    assert [t.name for t in suite.tasks] == ["Birds 525", "Plankton", "Insects", "Insects 2", "PlantNet", "Fungi",
                                             "PlantVillage", "Med. Leaf", "PlantDoc", "Rare Species"]
    assert {m.model for m in suite.models} >= {"bioclip", "ViT-B-16:openai"}
    assert all(t.metadata.startswith(str(tmp_path)) for t in suite.tasks)
    rare = suite.tasks[-1]
    assert rare.rank == "species" and rare.text == "taxon_com"


def _small_suite(tmp_path: Path, photos_dir: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(f"""
name: small
data_root: {photos_dir}
models: [{{name: unused, model: bioclip}}]
metrics: [zeroshot, fewshot]
fewshot: {{shots: [1, 5], trials: 3, seed: 0}}
tasks:
  - {{name: species, metadata: labels.csv, rank: species, text: taxon_com,
      filter: {{group: [amphibians, reptiles, nuts]}}}}
  - {{name: genus, metadata: labels.csv, rank: genus, text: sci, filter: {{group: [amphibians, reptiles, nuts]}}}}
""")
    return path


def test_suite_writes_tables_and_charts_and_resumes(standin_dir, photos_dir, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["eval", "suite", str(_small_suite(tmp_path, photos_dir)), "--output", str(out), "--workers", "2",
            "--model", f"standin={standin_dir}", "--model", "broken=ViT-Nope-99"]
    assert main(args) == 1  # the broken model is reported, the suite still completes
    for stem in ("zeroshot", "fewshot-1", "fewshot-5"):
        for suffix in (".md", ".csv", ".png"):
            assert (out / f"{stem}{suffix}").is_file(), stem + suffix
        assert (out / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
    table = pd.read_csv(out / "zeroshot.csv", index_col="model")
    assert list(table.index) == ["standin", "broken"] and list(table.columns) == ["species", "genus", "mean"]
    row = table.loc["standin"]
    assert 0 <= row["species"] <= row["genus"] <= 100  # a genus is easier to name than its species
    assert row["mean"] == pytest.approx((row["species"] + row["genus"]) / 2, abs=1e-3)
    assert table.loc["broken"].isna().all()
    results = pd.read_csv(out / "results.csv")
    assert {"zeroshot", "fewshot-1", "fewshot-5", "zeroshot@family", "error"} <= set(results["metric"])
    assert "ViT-Nope-99" in results.loc[results["metric"] == "error", "error"].iloc[0]
    suite_md = (out / "suite.md").read_text()
    assert "| standin |" in suite_md and "Failures" in suite_md and "![zeroshot](zeroshot.png)" in suite_md
    assert (out / "supports" / "species.json").is_file()
    printed = capsys.readouterr().out
    assert "Zero-shot top-1 accuracy" in printed

    finished = {p: p.stat().st_mtime_ns for p in (out / "runs" / "standin").glob("*.json")}
    assert len(finished) == 2
    main(args)  # resumes: finished runs are kept, not redone
    assert {p: p.stat().st_mtime_ns for p in (out / "runs" / "standin").glob("*.json")} == finished
    pd.testing.assert_frame_equal(pd.read_csv(out / "zeroshot.csv", index_col="model"), table)


def test_zeroshot_and_fewshot_commands(standin_dir, photos_dir, tmp_path):
    task = ["--metadata", str(photos_dir / "labels.csv"), "--filter", SMALL_FILTER, "--rank", "species",
            "--model", str(standin_dir), "--workers", "2"]
    assert main(["eval", "zeroshot", *task, "--text", "sci", "taxon", "--output", str(tmp_path / "zs")]) == 0
    summary = pd.read_csv(tmp_path / "zs" / "summary.csv")
    assert summary["text_type"].tolist() == ["sci", "taxon"]
    assert {"top1", "top5", "top1_kingdom", "top1_genus"} <= set(summary.columns)
    per_rank = pd.read_csv(tmp_path / "zs" / "taxon-per_rank.csv")
    assert per_rank["rank"].tolist()[0] == "kingdom"
    assert len(pd.read_csv(tmp_path / "zs" / "sci-predictions.csv")) == 258

    assert main(["eval", "fewshot", *task, "--trials", "2", "--output", str(tmp_path / "fs")]) == 0
    supports = tmp_path / "fs" / "supports.json"
    assert main(["eval", "fewshot", *task, "--supports", str(supports), "--output", str(tmp_path / "fs2")]) == 0
    first, again = (pd.read_csv(tmp_path / d / "trials.csv") for d in ("fs", "fs2"))
    pd.testing.assert_frame_equal(first, again)
    assert set(first["method"]) == {"cl2n", "linear_probe"} and set(first["k"]) == {1, 5}


def test_eval_errors_are_one_line(tmp_path, capsys):
    assert main(["eval", "zeroshot", "--metadata", str(tmp_path / "none.csv"), "--model", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("taxoclip: error: task metadata not found") and "\n" not in err
    (tmp_path / "t.csv").write_text("path,label\na.jpg,x\n")
    assert main(["eval", "fewshot", "--metadata", str(tmp_path / "t.csv")]) == 2
    assert "no path column 'filepath'" in capsys.readouterr().err
    assert main(["eval", "zeroshot", "--metadata", str(tmp_path / "t.csv"), "--path-column", "path",
                 "--label-column", "label", "--text", "nonsense"]) == 2
    assert "unknown text type 'nonsense'" in capsys.readouterr().err


def test_ablation_table_over_checkpoints_and_text_types(standin_dir, second_standin, photos_dir, tmp_path):
    out = tmp_path / "ablation"
    code = main(["eval", "ablation", "--metadata", str(photos_dir / "labels.csv"), "--filter", SMALL_FILTER,
                 "--rank", "species", "--name", "small", "--model", f"a={standin_dir}", "--model", f"b={second_standin}",
                 "--texts", "sci,taxon_com", "--shots", "1", "--trials", "2", "--output", str(out),
                 "--workers", "2"])
    assert code == 0
    table = pd.read_csv(out / "ablation-small.csv", index_col="model")
    assert list(table.index) == ["a", "b"] and list(table.columns) == ["sci", "taxon_com", "1-shot"]
    assert table.notna().all().all() and ((table >= 0) & (table <= 100)).all().all()
    long = pd.read_csv(out / "ablation-long.csv", keep_default_na=False)
    assert set(long.loc[long["rank"] != "", "rank"]) == {"kingdom", "phylum", "class", "order", "family", "genus",
                                                          "species"}
    assert (out / "supports" / "small.json").is_file()  # one set of supports shared by both checkpoints
    text = (out / "ablation.md").read_text()
    assert "| a |" in text and "at each rank" in text
    assert (out / "ablation-small.png").is_file()


def test_hierarchy_command_compares_models(standin_dir, second_standin, photos_dir, tmp_path):
    out = tmp_path / "h"
    assert main(["eval", "hierarchy", "--metadata", str(photos_dir / "labels.csv"), "--filter", SMALL_FILTER,
                 "--model", f"a={standin_dir}", "--model", f"b={second_standin}", "--no-figure",
                 "--output", str(out), "--workers", "2"]) == 0
    scores = pd.read_csv(out / "hierarchy.csv")
    assert set(scores["model"]) == {"a", "b"} and len(scores) == 14
    assert "knn_agreement a" in (out / "hierarchy.md").read_text()
