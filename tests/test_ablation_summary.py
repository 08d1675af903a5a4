"""The ablation driver's summary: mean ± sd over seeds, CE rows without zero-shot, every rank."""

import importlib.util
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parent.parent
RANKS = ["species", "genus", "family", "order", "class", "phylum", "kingdom"]


def load_driver():
    spec = importlib.util.spec_from_file_location("ablation_mini", REPO / "scripts" / "ablation_mini.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_summary_means_spreads_and_na(tmp_path):
    driver = load_driver()
    spec = yaml.safe_load((REPO / "configs" / "mini" / "ablation.yaml").read_text())
    rows, hierarchy = [], []
    for variant in spec["variants"]:
        for seed, value in zip(spec["seeds"], (0.10, 0.20)):
            model = driver.run_name(variant, seed)
            for task in RANKS:
                if variant in spec["contrastive"]:
                    for text in spec["evaluation"]["texts"]:
                        rows.append({"model": model, "task": task, "evaluation": "zero-shot", "text_type": text,
                                     "k": 0, "rank": None, "value": value, "error": None})
                for k in spec["evaluation"]["shots"]:
                    rows.append({"model": model, "task": task, "evaluation": "few-shot", "text_type": None,
                                 "k": k, "rank": None, "value": value / 2, "error": None})
                hierarchy.append({"rank": task, "knn_agreement": value, "knn_chance": 0.05, "silhouette": -value,
                                  "model": model})
    (tmp_path / "eval").mkdir()
    (tmp_path / "hierarchy").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "eval" / "ablation-long.csv", index=False)
    pd.DataFrame(hierarchy).to_csv(tmp_path / "hierarchy" / "hierarchy.csv", index=False)
    summary = driver.summarise(spec, tmp_path)
    table5 = summary.split("### Zero-shot at species rank")[1].split("###")[0]
    mixed = next(line for line in table5.splitlines() if line.startswith("| mixed "))
    assert mixed == "| mixed | " + " | ".join(["15.0 ± 5.0"] * 5 + ["7.5 ± 2.5"] * 2) + " |"
    ce = next(line for line in table5.splitlines() if line.startswith("| ce "))
    assert ce == "| ce | " + " | ".join(["n/a"] * 5 + ["7.5 ± 2.5"] * 2) + " |"
    assert summary.count("| chance | 5.0 | 5.0 |") == 1
    assert "| ce_hier | -15.0 ± 5.0 |" in summary
