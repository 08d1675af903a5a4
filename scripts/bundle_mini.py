"""Bundle a trained taxoclip-mini checkpoint into the package, with its tree-of-life bank.

    python scripts/bundle_mini.py runs/mini/train/mixed-s0 --labels ../shared/data/nature-quizzer-train/labels.csv

Writes `src/taxoclip/resources/mini/` in the official hub layout: the weights in float16
(loaded back into float32 parameters), `taxoclip.json` provenance, and `embeddings/` holding
one text vector per iNaturalist species of every family that occurs in the labels table (the
part of the tree that fits the 60 MB budget), encoded with the training caption template.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from taxoclip.models import layout, load_model
from taxoclip.models.encode import class_embeddings
from taxoclip.taxonomy import RANKS, Taxon, tol_text

BUNDLE = Path(__file__).resolve().parent.parent / "src" / "taxoclip" / "resources" / "mini"
BANK_TEMPLATES = ("a photo of {}.",)


def bank_taxa(labels_csv: Path) -> list[Taxon]:
    """Every iNat species (hybrids left out, for size) in the families of the labels table, with its common name where known."""
    from taxoclip.taxonomy.resolve import default_index

    labels = pd.read_csv(labels_csv, dtype=str).fillna("")
    families = set(labels["family"])
    commons = dict(zip(labels["species"], labels["common_name"]))
    index = default_index()
    rows = index.table["taxonRank"].eq("species") & index.table["family"].isin(families)
    lineage = index.lineage[rows.to_numpy()]
    lineage = lineage[~lineage["epithet"].str.contains(".", regex=False)]  # iNat's "Genus sp." placeholders
    taxa = []
    for values in lineage[[*RANKS[:-1], "epithet"]].itertuples(index=False):
        taxon = Taxon(*values)
        taxa.append(Taxon(*taxon.ranks, common=commons.get(taxon.binomial, "")))
    return taxa


def write_weights_fp16(source: Path, target: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(source / layout.WEIGHTS_SAFETENSORS)
    save_file({k: v.half() if v.is_floating_point() else v for k, v in state.items()},
              str(target / layout.WEIGHTS_SAFETENSORS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="training run directory or checkpoint")
    parser.add_argument("--labels", required=True, help="labels.csv of the training photos (for the families)")
    parser.add_argument("--card", default="docs/models/mini.md")
    args = parser.parse_args()

    loaded = load_model(args.run)
    source = loaded.resolved.directory
    shutil.rmtree(BUNDLE, ignore_errors=True)
    BUNDLE.mkdir(parents=True)
    shutil.copy(source / layout.CONFIG_FILE, BUNDLE / layout.CONFIG_FILE)
    write_weights_fp16(source, BUNDLE)
    meta = json.loads((source / layout.TAXOCLIP_META).read_text()) if (source / layout.TAXOCLIP_META).is_file() else {}
    taxa = bank_taxa(Path(args.labels))
    texts = [tol_text(t) for t in taxa]
    vectors = class_embeddings(loaded.model, loaded.tokenizer, texts, templates=BANK_TEMPLATES, batch_size=1024,
                               progress=True).numpy()
    (BUNDLE / layout.TOL_DIR).mkdir()
    np.save(BUNDLE / layout.TOL_EMBEDDINGS, np.ascontiguousarray(vectors.T.astype(np.float32)))
    (BUNDLE / layout.TOL_NAMES).write_text(json.dumps([t.to_tol_entry() for t in taxa], separators=(",", ":")))
    meta.update({"name": "taxoclip-mini", "card": args.card, "trained_from": str(source),
                 "bank": {"taxa": len(taxa), "scope": "iNaturalist species (hybrids and \"sp.\" placeholders excluded) of the families in the training labels",
                          "templates": list(BANK_TEMPLATES)}})
    (BUNDLE / layout.TAXOCLIP_META).write_text(json.dumps(meta, indent=2))
    total = sum(p.stat().st_size for p in BUNDLE.rglob("*") if p.is_file())
    print(f"bundled {source} -> {BUNDLE}: {len(taxa):,} taxa, {total / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
