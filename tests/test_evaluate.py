"""Evaluation on real photos with the tiny stand-in: tasks, zero-shot, few-shot, hierarchy."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from taxoclip.evaluate import (
    TaskSpec,
    cl2n_predict,
    draw_supports,
    few_shot,
    hierarchy,
    hierarchy_scores,
    knn_agreement,
    label_texts,
    load_task,
    per_rank_accuracy,
    read_supports,
    score_zero_shot,
    write_supports,
    zero_shot,
)
from taxoclip.evaluate.hierarchy import drilldown_figure, drilldown_panels
from taxoclip.taxonomy import RANKS, Taxon
from taxoclip.taxonomy.templates import templates

SMALL_GROUPS = ["amphibians", "reptiles", "nuts"]  # 258 photos, 36 species, two kingdoms


@pytest.fixture(scope="session")
def standin(standin_dir):
    from taxoclip.models import load_model

    return load_model(str(standin_dir))


@pytest.fixture(scope="session")
def small_task(photos_dir):
    spec = TaskSpec.from_dict({"name": "small", "metadata": str(photos_dir / "labels.csv"),
                               "filter": {"group": SMALL_GROUPS}, "rank": "species", "text": "taxon_com"})
    return load_task(spec)


def _hand_zero_shot(loaded, paths, class_texts):
    """Zero-shot predictions written out from open_clip primitives, without taxoclip's helpers."""
    import torch
    import torch.nn.functional as F
    from PIL import Image, ImageOps

    with torch.inference_mode():
        pixels = torch.stack([loaded.preprocess(ImageOps.exif_transpose(Image.open(p)).convert("RGB")) for p in paths])
        images = F.normalize(loaded.model.encode_image(pixels), dim=-1)
        vectors = []
        for text in class_texts:
            prompts = [template.format(text) for template in templates("bioclip")]
            embedded = F.normalize(loaded.model.encode_text(loaded.tokenizer(prompts)), dim=-1)
            vectors.append(F.normalize(embedded.mean(dim=0), dim=-1))
        scores = images @ torch.stack(vectors).T
    return scores.numpy()


def test_zero_shot_equals_hand_computation(standin, labels, tmp_path):
    species = ["Meles meles", "Bufo bufo", "Amanita rubescens", "Corylus avellana", "Testudo graeca", "Cocos nucifera"]
    rows = pd.concat([labels[labels["species"] == s].head(2) for s in species])
    assert len(rows) == 12
    table = pd.DataFrame({"filepath": rows["path"].tolist(), "class": rows["species"].str.replace(" ", "_").tolist()})
    table.to_csv(tmp_path / "metadata.csv", index=False)
    task = load_task(TaskSpec(name="hand", metadata=str(tmp_path / "metadata.csv")))
    assert task.class_names == sorted(species)  # `asis` = cleaned labels ("Pica_pica" -> "Pica pica")

    result = zero_shot(standin, task, "asis", workers=1, cache=False)
    scores = _hand_zero_shot(standin, table["filepath"], task.class_names)
    truth = task.labels
    ranked = np.argsort(-scores, axis=1)
    assert result.top1 == pytest.approx(float((ranked[:, 0] == truth).mean()), abs=0)
    assert result.top5 == pytest.approx(float((ranked[:, :5] == truth[:, None]).any(1).mean()), abs=0)
    assert result.predictions["predicted"].tolist() == [task.class_names[i] for i in ranked[:, 0]]
    per_class = [(ranked[truth == c, 0] == c).mean() for c in range(6)]
    assert result.per_class["accuracy"].tolist() == pytest.approx(per_class)
    assert result.mean_per_class == pytest.approx(np.mean(per_class))


def test_score_zero_shot_small_case_by_hand():
    # 4 images, 3 classes; cosine scores are the dot products below.
    images = np.array([[1, 0, 0], [0, 1, 0], [0.6, 0.8, 0], [0, 0, 1]], dtype=np.float32)
    classes = np.array([[1, 0, 0], [0, 1, 0], [0, 0.6, 0.8]], dtype=np.float32)
    labels = np.array([0, 2, 1, 2])
    # scores: img0 [1,0,0] -> 0 right; img1 [0,1,.6] -> 1 wrong (2nd: 2); img2 [.6,.8,.48] -> 1 right;
    # img3 [0,0,.8] -> 2 right
    metrics = score_zero_shot(images, classes, labels, ["a", "b", "c"], [None, None, None])
    assert metrics["predicted"].tolist() == [0, 1, 1, 2]
    assert metrics["top1"] == pytest.approx(3 / 4)
    assert metrics["top5"] == pytest.approx(1.0)
    assert metrics["per_class"]["accuracy"].tolist() == pytest.approx([1.0, 1.0, 0.5])
    assert metrics["per_rank"].empty  # no lineages known


def test_per_rank_accuracy_counts_rank_matches():
    magpie = Taxon("Animalia", "Chordata", "Aves", "Passeriformes", "Corvidae", "Pica", "pica")
    raven = Taxon("Animalia", "Chordata", "Aves", "Passeriformes", "Corvidae", "Corvus", "corax")
    tit = Taxon("Animalia", "Chordata", "Aves", "Passeriformes", "Paridae", "Parus", "major")
    oak = Taxon("Plantae", "Tracheophyta", "Magnoliopsida", "Fagales", "Fagaceae", "Quercus", "robur")
    # a homonym genus in another family must not count as right at genus
    other_pica = Taxon("Animalia", "Chordata", "Mammalia", "Lagomorpha", "Ochotonidae", "Pica", "x")
    taxa = [magpie, raven, tit, oak, other_pica]
    labels = np.array([0, 0, 1, 2, 3, 0])
    predicted = np.array([0, 1, 0, 3, 0, 4])
    table = per_rank_accuracy(predicted, labels, taxa).set_index("rank")
    # image -> right down to: 0 magpie->magpie all; 1 magpie->raven family; 2 raven->magpie family;
    # 3 tit->oak none; 4 oak->magpie none; 5 magpie->the pika "Pica" phylum (same genus name, other lineage)
    expected = {"kingdom": 4, "phylum": 4, "class": 3, "order": 3, "family": 3, "genus": 1, "species": 1}
    for rank in RANKS:
        assert table.loc[rank, "correct"] == expected[rank], rank
        assert table.loc[rank, "images"] == 6
    assert table.loc["family", "accuracy"] == pytest.approx(0.5)


def test_zero_shot_reports_per_rank_on_real_photos(standin, small_task):
    result = zero_shot(standin, small_task, workers=2)
    ranks = result.per_rank.set_index("rank")
    assert list(ranks.index) == list(RANKS)
    assert ranks.loc["species", "accuracy"] == pytest.approx(result.top1)
    assert (np.diff(ranks["accuracy"].to_numpy()) <= 1e-12).all()  # coarser ranks are never harder
    assert ranks.loc["kingdom", "images"] == len(small_task.table) == result.images
    predicted = result.predictions
    kingdom_of = {n: t.kingdom for n, t in zip(small_task.class_names, small_task.class_taxa)}
    right = (predicted["true"].map(kingdom_of) == predicted["predicted"].map(kingdom_of)).mean()
    assert ranks.loc["kingdom", "accuracy"] == pytest.approx(right)


def test_label_texts_of_each_type(photos_dir):
    spec = TaskSpec.from_dict({"name": "g", "metadata": str(photos_dir / "labels.csv"), "rank": "genus",
                               "filter": {"group": ["nuts"]}})
    task = load_task(spec)
    corylus = task.class_names.index("Corylus")
    assert label_texts(task, "asis").texts[corylus] == "Corylus"
    assert label_texts(task, "sci").texts[corylus] == "Corylus"
    assert label_texts(task, "taxon").texts[corylus] == "Plantae Tracheophyta Magnoliopsida Fagales Betulaceae Corylus"
    species = load_task(TaskSpec.from_dict({**vars(spec), "rank": "species"}))
    hazel = species.class_names.index("Corylus avellana")
    assert label_texts(species, "com").texts[hazel] == "common filbert"
    assert label_texts(species, "sci_com").texts[hazel] == "Corylus avellana with common name common filbert"
    assert label_texts(species, "taxon_com").texts[hazel].endswith("Corylus avellana with common name common filbert")


def test_class_strings_are_resolved_offline_and_unresolved_reported(tmp_path):
    table = pd.DataFrame({"filepath": ["a.jpg", "b.jpg", "c.jpg"],
                          "class": ["Pica_pica", "Amanita muscaria (L.) Lam., 1783", "Tomato___Late_blight"]})
    table.to_csv(tmp_path / "metadata.csv", index=False)
    task = load_task(TaskSpec(name="strings", metadata=str(tmp_path / "metadata.csv")))
    assert label_texts(task, "asis").texts == ["Amanita muscaria", "Pica pica", "Tomato Late blight"]
    taxon = label_texts(task, "taxon")
    assert taxon.unresolved == ["Tomato Late blight"]
    assert taxon.texts[0] == "Fungi Basidiomycota Agaricomycetes Agaricales Amanitaceae Amanita muscaria"
    assert taxon.texts[1].startswith("Animalia Chordata Aves Passeriformes Corvidae Pica pica")
    assert taxon.texts[2] == "Tomato Late blight"  # falls back to its own label
    assert "family" in task.known_ranks()


def test_bioclip_metadata_layout_with_cls_column(tmp_path):
    # BioCLIP's own layout: `class` is the label, `cls` the taxonomic class, species the epithet.
    table = pd.DataFrame({"filepath": ["x/1.jpg", "x/2.jpg"], "class": ["magpie", "raven"],
                          "kingdom": ["Animalia"] * 2, "phylum": ["Chordata"] * 2, "cls": ["Aves"] * 2,
                          "order": ["Passeriformes"] * 2, "family": ["Corvidae"] * 2, "genus": ["Pica", "Corvus"],
                          "species": ["pica", "corax"], "common_name": ["Eurasian magpie", "common raven"]})
    table.to_csv(tmp_path / "metadata.csv")
    task = load_task(TaskSpec(name="bioclip-layout", metadata=str(tmp_path / "metadata.csv")))
    assert task.class_names == ["Magpie", "Raven"]  # clean_label; the CLIP tokenizer lower-cases anyway
    assert label_texts(task, "sci").texts == ["Pica pica", "Corvus corax"]
    assert label_texts(task, "taxon_com").texts[1] == \
        "Animalia Chordata Aves Passeriformes Corvidae Corvus corax with common name common raven"
    assert task.table["path"].iloc[0] == str(tmp_path / "x" / "1.jpg")


def _cl2n_by_hand(support, support_labels, query):
    mean = support.mean(axis=0)
    s = [(v - mean) / np.linalg.norm(v - mean) for v in support]
    q = [(v - mean) / np.linalg.norm(v - mean) for v in query]
    out = []
    for v in q:
        best, best_distance = None, np.inf
        for c in sorted(set(support_labels.tolist())):
            centroid = np.mean([s[i] for i in range(len(s)) if support_labels[i] == c], axis=0)
            distance = np.sqrt(((v - centroid) ** 2).sum())
            if distance < best_distance:
                best, best_distance = c, distance
        out.append(best)
    return np.array(out)


def test_cl2n_matches_direct_numpy():
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((7, 16)) + 2.0  # a shared offset that centring removes
    support_labels = np.repeat(np.arange(7), 5)
    support = centres[support_labels] + 0.8 * rng.standard_normal((35, 16))
    query_labels = np.repeat(np.arange(7), 20)
    query = centres[query_labels] + 0.8 * rng.standard_normal((140, 16))
    ours = cl2n_predict(support, support_labels, query)
    assert ours.tolist() == _cl2n_by_hand(support, support_labels, query).tolist()
    assert 0.3 < (ours == query_labels).mean() < 1.0  # a case where the choice matters


def test_few_shot_supports_rerun_identically(standin, small_task, tmp_path):
    first = few_shot(standin, small_task, shots=(1, 5), trials=5, seed=7, workers=2)
    assert set(first.summary["method"]) == {"cl2n", "linear_probe"}
    assert (first.summary["trials"] == 5).all()
    five = first.trials[(first.trials["k"] == 5) & (first.trials["method"] == "cl2n")]
    counts = small_task.table["label"].value_counts()
    assert (five["classes"] == int((counts >= 6).sum())).all()
    assert len(first.supports.left_out[5]) == int((counts < 6).sum())

    saved = write_supports(first.supports, tmp_path / "supports.json")
    document = json.loads(saved.read_text())
    assert document["format"] == "taxoclip-fewshot-supports" and len(document["trials"]) == 10
    again = few_shot(standin, small_task, supports=saved, workers=2)
    pd.testing.assert_frame_equal(first.trials, again.trials)
    as_csv = few_shot(standin, small_task, supports=write_supports(first.supports, tmp_path / "s.csv"), workers=2)
    pd.testing.assert_frame_equal(first.trials, as_csv.trials)
    assert read_supports(saved).trials[3].supports == first.supports.trials[3].supports

    other = draw_supports(small_task, (1,), trials=1, seed=8)
    assert other.trials[0].supports != first.supports.trials[0].supports


def test_unreadable_images_are_recorded_not_fatal(standin, labels, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    rows = labels[labels["species"].isin(["Bufo bufo", "Meles meles"])].head(6)
    table = pd.DataFrame({"filepath": [*rows["path"], str(broken), str(tmp_path / "missing.jpg")],
                          "class": [*rows["species"], "Bufo bufo", "Meles meles"]})
    table.to_csv(tmp_path / "metadata.csv", index=False)
    task = load_task(TaskSpec(name="broken", metadata=str(tmp_path / "metadata.csv")))
    result = zero_shot(standin, task, workers=1)
    assert result.images == len(rows)
    assert set(result.failed) == {str(broken), str(tmp_path / "missing.jpg")}
    assert all(message for message in result.failed.values())


def _synthetic_tree(seed: int = 0):
    """Taxa in a balanced tree (2 kingdoms x 2 phyla x ... x 2 species) with 6 images each."""
    taxa = []
    for i in range(2 ** 6):
        bits = [(i >> (5 - r)) & 1 for r in range(6)]
        names = [f"{rank.capitalize()}{''.join(map(str, bits[:depth + 1]))}" for depth, rank in enumerate(RANKS[:6])]
        taxa.append(Taxon(*names[:5], f"Genus{''.join(map(str, bits))}", f"sp{i}"))
    image_taxa = [t for t in taxa for _ in range(6)]
    rng = np.random.default_rng(seed)
    dim = 24
    offsets = {}
    features = np.zeros((len(image_taxa), dim))
    for row, taxon in enumerate(image_taxa):
        for depth, rank in enumerate(RANKS):
            key = taxon.prefix(rank)
            if key not in offsets:
                offsets[key] = rng.standard_normal(dim) * (1.0 / (depth + 1))  # coarse ranks weigh most
            features[row] += offsets[key]
    features += 0.05 * rng.standard_normal(features.shape)
    return features.astype(np.float32), image_taxa


def test_hierarchy_scores_prefer_an_embedding_that_follows_the_tree():
    features, taxa = _synthetic_tree()
    shuffled = features[np.random.default_rng(1).permutation(len(features))]
    good = hierarchy_scores(features, taxa, k=5).set_index("rank")
    bad = hierarchy_scores(shuffled, taxa, k=5).set_index("rank")
    assert list(good.index) == list(RANKS)
    for rank in RANKS:
        assert good.loc[rank, "knn_agreement"] > bad.loc[rank, "knn_agreement"] + 0.2, rank
        assert good.loc[rank, "silhouette"] > bad.loc[rank, "silhouette"] + 0.1, rank
        assert abs(bad.loc[rank, "knn_agreement"] - bad.loc[rank, "knn_chance"]) < 0.1, rank
    assert good.loc["kingdom", "groups"] == 2 and good.loc["species", "groups"] == 64


def test_knn_agreement_by_hand():
    features = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    agreement, chance = knn_agreement(features, np.array(["a", "a", "b", "a"]), k=1)
    # nearest others: 0->1 (a,a) 1->0 (a,a) 2->3 (b,a) 3->2 (a,b)
    assert agreement == pytest.approx(0.5)
    assert chance == pytest.approx((2 / 3 * 3 + 0) / 4)


def test_drilldown_figure(tmp_path):
    features, taxa = _synthetic_tree()
    panels = drilldown_panels(taxa, min_images=10)
    assert [p.rank for p in panels] == list(RANKS[:6])  # a genus holds 6 images < 10: no species panel
    assert len(panels[0].rows) == len(taxa) and len(panels[1].rows) == len(taxa) // 2
    drawn = drilldown_figure(features, taxa, tmp_path / "tree.png", tsne_iterations=250)
    assert len(drawn) == 6 and len(drawn[-1].rows) == 12
    assert (tmp_path / "tree.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_hierarchy_on_real_photos(standin, small_task, tmp_path):
    result = hierarchy(standin, small_task, figure=tmp_path / "h.png", max_points=300, tsne_iterations=250, workers=2)
    scores = result.scores.set_index("rank")
    assert list(scores.index) == list(RANKS)
    assert scores.loc["kingdom", "groups"] == 2 and scores.loc["species", "groups"] == small_task.n_classes
    assert ((scores["knn_agreement"] >= 0) & (scores["knn_agreement"] <= 1)).all()
    assert (tmp_path / "h.png").stat().st_size > 1000
