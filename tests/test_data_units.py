"""The build's pieces on their own: near-duplicate search, splits, folder names, image policies."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from taxoclip.data.config import DedupConfig
from taxoclip.data.dedup import find_duplicates, near_pairs, popcount
from taxoclip.data.images import fingerprint, prepare_jpeg, to_rgb
from taxoclip.data.sources import ranks_from_tagged
from taxoclip.data.splits import assign_splits, part_size
from taxoclip.data.taxa import name_key, read_name_list
from taxoclip.taxonomy.taxon import Taxon
from taxoclip.taxonomy.text import render_caption


def test_near_pairs_are_exactly_the_pairs_within_the_threshold():
    rng = np.random.default_rng(5)
    hashes = rng.integers(0, 2**63, size=1500, dtype=np.int64).astype(np.uint64) * np.uint64(2)
    planted = hashes[:300].copy()
    for i in range(len(planted)):  # near copies at 1..9 bits
        for bit in rng.choice(64, size=1 + i % 9, replace=False):
            planted[i] ^= np.uint64(1 << int(bit))
    values = np.unique(np.concatenate([hashes, planted]))
    distances = popcount(values[:, None] ^ values[None, :]).reshape(len(values), len(values))
    for threshold in (0, 2, 6, 9):
        low, high = np.nonzero(np.triu(distances <= threshold, k=1))
        expected = set(zip(low.tolist(), high.tolist(), distances[low, high].tolist()))
        found = set(zip(*(a.tolist() for a in near_pairs(values, threshold))))
        assert found == expected, threshold
        assert threshold < 2 or len(found) >= 300 * min(threshold, 9) // 9


def test_duplicates_keep_the_first_and_name_it():
    from taxoclip.data.dedup import ExcludedImages

    config = DedupConfig(exact=True, near=True, near_threshold=3)
    ids = ["a", "b", "c", "d", "e", "f", "g"]
    sha = ["s1", "s1", "s3", "s4", "s5", "s6", "s7"]
    phash = [0b1111, 0b1111, 0b1111 ^ 0b11, 3 << 61, 3 << 61, (1 << 40) | 0b111, 0b111 << 20]
    excluded = ExcludedImages(sha256={"s7": "eval:1"}, phash=[((1 << 40) | 0b1, "eval:2")])
    removed = find_duplicates(ids, sha, phash, config, excluded)
    assert removed.values.tolist() == [
        ["b", "exact_duplicate", "a", 0], ["c", "near_duplicate", "a", 2], ["e", "near_duplicate", "d", 0],
        ["f", "excluded_image", "eval:2", 2], ["g", "excluded_image", "eval:1", 0]]
    assert find_duplicates(ids, sha, phash, DedupConfig(near=False)).values.tolist() == [
        ["b", "exact_duplicate", "a", 0]]


def test_splits_are_per_source_deterministic_and_order_free():
    samples = pd.DataFrame({"id": [f"id-{i}" for i in range(300)], "source": ["x"] * 200 + ["y"] * 100})
    fractions = {"x": 0.05, "y": 0.2}
    split, small = assign_splits(samples, 17, fractions, {"x": 0.1, "y": 0.0})
    assert (split[samples.source == "x"] == "val").sum() == 10
    assert (split[samples.source == "y"] == "val").sum() == 20
    assert small.sum() == round(0.1 * 190) and not (small & (split == "val")).any()
    assert not small[samples.source == "y"].any()
    shuffled = samples.sample(frac=1.0, random_state=1)
    split2, small2 = assign_splits(shuffled, 17, fractions, {"x": 0.1, "y": 0.0})
    assert split2.sort_index().equals(split) and small2.sort_index().equals(small)
    other, _ = assign_splits(samples, 18, fractions, {"x": 0.1, "y": 0.0})
    assert not other.equals(split)


def test_part_size_does_not_depend_on_workers():
    assert part_size(3541, 100_000) == 1000
    assert part_size(10_000_000, 100_000) == 100_000
    assert part_size(50, 4) == 4


def test_folder_names_and_exclusion_formats_share_one_key():
    for raw in ("Ursus arctos", "Ursus_arctos", "URSUS ARCTOS", "ursus_arctos Linnaeus, 1758",
                "00042_Animalia_Chordata_Mammalia_Carnivora_Ursidae_Ursus_arctos"):
        assert name_key(raw) == "ursus arctos", raw
    assert name_key("Tomato___Late_blight") == "tomato late blight"


def test_name_lists_read_text_and_tables(tmp_path):
    (tmp_path / "rare.txt").write_text("# rare species\nPica hudsonia\n\nUrsus arctos  # brown bear\n")
    assert read_name_list(tmp_path / "rare.txt") == ["Pica hudsonia", "Ursus arctos"]
    pd.DataFrame({"genus": ["Pica"], "species": ["hudsonia"]}).to_csv(tmp_path / "ranks.csv", index=False)
    assert read_name_list(tmp_path / "ranks.csv") == ["Pica hudsonia"]


def test_tagged_text_gives_back_the_ranks():
    taxon = Taxon("Animalia", "Chordata", "Aves", "Passeriformes", "Corvidae", "Pica", "hudsonia", "magpie")
    ranks = ranks_from_tagged(render_caption(taxon, "taxonTag_com"))
    assert ranks == {"kingdom": "Animalia", "phylum": "Chordata", "class": "Aves", "order": "Passeriformes",
                     "family": "Corvidae", "genus": "Pica", "species": "hudsonia"}


def test_resize_policies_and_exif_orientation(photos_dir):
    path = sorted((photos_dir / "images").glob("*.jpg"))[0]
    with Image.open(path) as image:
        width, height = image.size
        assert width > height
        rotated = io.BytesIO()
        exif = image.getexif()
        exif[0x0112] = 6  # "rotate 90 CW to view": the photo is stored sideways
        image.save(rotated, format="JPEG", quality=95, exif=exif)
    plain = Path(path).read_bytes()
    for policy, size in (("crop", (224, 224)), ("squash", (224, 224)), ("pad", (224, 224)),
                         ("shorter", (round(224 * width / height), 224))):
        with Image.open(io.BytesIO(prepare_jpeg(plain, 224, policy))) as out:
            assert out.size == size and out.mode == "RGB", policy
    with Image.open(io.BytesIO(prepare_jpeg(rotated.getvalue(), 224, "shorter"))) as upright:
        assert upright.size == (224, round(224 * width / height))  # portrait once EXIF is applied
    assert fingerprint(rotated.getvalue()).width == height
    with Image.open(io.BytesIO(prepare_jpeg(plain, 224, "pad"))) as padded:
        corner = np.asarray(padded)[:3, :3].mean()
        assert corner < 10  # black bars above and below a landscape photo


def test_transparent_images_go_onto_white():
    rgba = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    rgba.paste((200, 0, 0, 255), (10, 10, 30, 30))
    rgb = np.asarray(to_rgb(rgba))
    assert rgb[0, 0].tolist() == [255, 255, 255] and rgb[20, 20].tolist() == [200, 0, 0]
    grey16 = Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16))
    assert to_rgb(grey16).mode == "RGB"
