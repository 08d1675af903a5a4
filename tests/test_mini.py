"""The bundled taxoclip-mini: loads offline, predicts, and keeps the held-out accuracy of its model card."""

from pathlib import Path

import pytest

from taxoclip.evaluate.suite import read_suite
from taxoclip.evaluate.tasks import load_task
from taxoclip.evaluate.zeroshot import zero_shot
from taxoclip.models import layout, load_model
from taxoclip.models.tol import read_tol_embeddings, read_tol_names

REPO = Path(__file__).resolve().parent.parent
CARD_CLASS_TOP1 = 0.211  # docs/models/mini.md: zero-shot top-1 at class rank on the 361 held-out photos
MARGIN = 0.02


@pytest.fixture(scope="module")
def mini():
    return load_model("mini")


def test_bundled_model_is_complete_and_small(mini):
    directory = mini.resolved.directory
    assert mini.identity.kind == "bundled" and mini.resolved.meta["name"] == "taxoclip-mini"
    size = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
    assert size <= 60_000_000
    bank = read_tol_embeddings(directory / layout.TOL_EMBEDDINGS)
    names = read_tol_names(directory / layout.TOL_NAMES)
    assert bank.shape == (mini.embed_dim, len(names)) and len(names) > 100_000
    assert not any("." in taxon.species for taxon in names)


def test_held_out_species_were_never_trained_on():
    held_out = {line.strip() for line in (REPO / "configs/mini/heldout-species.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    assert len(held_out) == 49
    data_config = (REPO / "configs/mini/data.yaml").read_text()
    assert "heldout-species.txt" in data_config


def test_held_out_class_accuracy_stays_at_the_model_card_figure(mini, photos_dir):
    suite = read_suite(REPO / "configs/mini/heldout-suite.yaml", data_root=REPO)
    spec = next(task for task in suite.tasks if task.name == "class")
    task = load_task(spec)
    assert len(task.filepaths) == 361
    result = zero_shot(mini, task, progress=False)
    assert result.top1 >= CARD_CLASS_TOP1 - MARGIN, result.top1
    assert result.top1 > 1 / task.n_classes  # and above chance (9 classes)
