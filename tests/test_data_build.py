"""`data build` from real photos: folder trees, CSV manifests and existing shards, read back with
webdataset and checked member by member against the foundation's renderers."""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from data_support import (
    EXCLUDED_SPECIES,
    assert_shards_match_catalog,
    photo_subset,
    resized_copy,
    sha256_file,
    write_config,
)

from taxoclip.data import schema
from taxoclip.data.build import build
from taxoclip.data.check import check_dataset
from taxoclip.data.config import load_config
from taxoclip.data.stats import dataset_stats
from taxoclip.taxonomy.resolve import resolve_names
from taxoclip.taxonomy.taxon import RANKS

# -- folder tree ----------------------------------------------------------------------------------

INAT_STYLE = {"Meles meles": "00042_Animalia_Chordata_Mammalia_Carnivora_Mustelidae_Meles_meles",
              "Amanita rubescens": "00107_Fungi_Basidiomycota_Agaricomycetes_Agaricales_Amanitaceae_Amanita_rubescens"}


def folder_name(species: str, index: int) -> str:
    """Three folder naming styles in one tree: iNat21, `Genus_species`, and plain binomials."""
    if species in INAT_STYLE:
        return INAT_STYLE[species]
    return species.replace(" ", "_") if index % 2 else species


def test_folder_tree_with_dedup_and_exclusions(tmp_path, labels):
    subset = photo_subset(labels)
    tree = tmp_path / "tree"
    folders = {species: folder_name(species, i) for i, species in enumerate(sorted(subset.species_label.unique()))}
    for species, group in subset.groupby("species_label", sort=True):
        folder = tree / folders[species]
        folder.mkdir(parents=True)
        for path in group["path"]:
            (folder / Path(path).name).symlink_to(path)
    corylus = subset[subset.species_label == "Corylus avellana"]["path"].iloc[0]
    papaver = subset[subset.species_label == "Papaver rhoeas"]["path"].iloc[0]
    lynx = subset[subset.species_label == "Lynx lynx"]["path"].iloc[0]
    shutil.copy(corylus, tree / folders["Corylus avellana"] / "zz-exact-copy.jpg")
    resized_copy(papaver, tree / folders["Papaver rhoeas"] / "zz-resized-copy.jpg")
    resized_copy(lynx, tmp_path / "evaluation-set" / "lynx-small.jpg", scale=0.6)
    names = pd.DataFrame({"scientific_name": subset["species_label"], "common_name": subset["common_name"]})
    names.to_csv(tmp_path / "common.csv", index=False)

    config = write_config(tmp_path / "tree.yaml", {
        "output": "out", "workers": 2,
        "sources": [{"name": "tree", "kind": "folder", "path": "tree", "license": "CC-BY-4.0"}],
        "shards": {"max_samples": 8},
        "splits": {"val_fraction": 0.1, "train_small_fraction": 0.25},
        "exclude": {"images": ["evaluation-set"], "species": ["VULPES_vulpes (Linnaeus, 1758)"]},
        "taxonomy": {"common_names": ["common.csv"]},
    })
    result = build(config, progress=False)
    out = tmp_path / "out"
    catalog = assert_shards_match_catalog(out)
    removed = pd.read_csv(out / "reports" / "removed.csv", dtype=str, keep_default_na=False)
    by_source_id = removed.set_index("source_id")

    # planted copies: the exact one by content hash, the resized one by perceptual hash
    exact = by_source_id.loc[f"{folders['Corylus avellana']}/zz-exact-copy.jpg"]
    assert exact["reason"] == "exact_duplicate"
    original_id = catalog.loc[catalog.source_id == f"{folders['Corylus avellana']}/{Path(corylus).name}", "id"].iloc[0]
    assert exact["detail"] == original_id
    resized = by_source_id.loc[f"{folders['Papaver rhoeas']}/zz-resized-copy.jpg"]
    assert resized["reason"] == "near_duplicate" and int(resized["distance"]) <= 6
    # the evaluation image, stored elsewhere at another size, removes its original
    lynx_row = removed[removed.source_id.str.endswith(Path(lynx).name)]
    assert lynx_row["reason"].tolist() == ["excluded_image"]
    assert lynx_row["detail"].iloc[0].endswith("lynx-small.jpg")
    # species exclusion in another formatting removes every fox, and only foxes
    foxes = removed[removed.reason == "excluded_species"]
    assert len(foxes) == (subset.species_label == EXCLUDED_SPECIES).sum()
    assert set(foxes["raw_name"]) == {folders[EXCLUDED_SPECIES]}
    assert not (catalog["species"] == EXCLUDED_SPECIES).any()

    # every record is either written once (train/val) or removed once, for a reason
    records = len(subset) + 2
    assert result.records == records
    images = catalog[catalog.split != "train_small"]
    assert len(images) + len(removed) == records
    assert set(removed["reason"]) <= {"exact_duplicate", "near_duplicate", "excluded_image", "excluded_species"}

    # folder naming styles all resolve; the iNat21 lineage is kept; common names from the CSV
    meles = images[images.raw_name == INAT_STYLE["Meles meles"]]
    assert (meles[list(RANKS)].iloc[0].tolist() ==
            ["Animalia", "Chordata", "Mammalia", "Carnivora", "Mustelidae", "Meles", "Meles meles"])
    zea = images[images.species == "Zea mays"]
    assert len(zea) and zea["kingdom"].eq("Plantae").all()
    corylus_common = subset.loc[subset.species_label == "Corylus avellana", "common_name"].iloc[0]
    assert images.loc[images.species == "Corylus avellana", "common_name"].eq(corylus_common).all()
    assert images["license"].eq("CC-BY-4.0").all()
    assert not (out / schema.STATE_DIR).exists()
    assert check_dataset(out).ok

    # a second run of the same config finds the build complete and changes nothing
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.tar")}
    again = build(config, progress=False)
    assert again.already_complete and again.samples == result.samples
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("*.tar")}


# -- CSV manifest of paths ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def manifest_build(tmp_path_factory, labels, photos_dir):
    """A CSV of relative paths (the labels.csv columns) plus an unresolvable, an ambiguous and a
    hand-mapped name."""
    root = tmp_path_factory.mktemp("manifest")
    subset = photo_subset(labels)
    extra = labels[labels.species_label == "Triticum aestivum"].head(4).copy()  # photos not in the subset
    extra["species_label"] = ["Notarealname bogusii", "Morus", "Morus", "Mystery fox"]
    for rank in RANKS:
        extra[rank] = ""
    extra["common_name"] = ""
    extra["filepath"] = [photos_dir / p for p in extra["filepath"]]  # absolute paths work too
    table = pd.concat([subset, extra], ignore_index=True).drop(columns=["path"])
    table.to_csv(root / "photos.csv", index=False)
    config = write_config(root / "manifest.yaml", {
        "output": "out", "workers": 2,
        "sources": [{"name": "quiz", "kind": "manifest", "path": "photos.csv", "root": str(photos_dir),
                     "path_column": "filepath", "name_column": "species_label"}],
        "shards": {"max_samples": 10},
        "splits": {"seed": 3, "val_fraction": 0.1, "train_small_fraction": 0.2},
        "taxonomy": {"map": {"mystery_FOX": {"kingdom": "Animalia", "phylum": "Chordata", "class": "Mammalia",
                                             "order": "Carnivora", "family": "Canidae", "genus": "Vulpes",
                                             "species": "vulpes", "common_name": "red fox"}}},
    })
    result = build(config, progress=False)
    return root / "out", table, result


def test_manifest_of_paths_carries_provenance(manifest_build):
    out, table, result = manifest_build
    catalog = assert_shards_match_catalog(out)
    images = catalog[catalog.split != "train_small"].set_index("source_id")
    originals = table.assign(source_id=table["filepath"].astype(str)).set_index("source_id")
    assert len(images) >= len(table) - 4 - 5  # at most a few natural near-duplicates go
    for column in ("license", "rights_holder", "source_url", "common_name"):
        shared = images.index.intersection(originals.index[originals["common_name"] != ""])
        if column != "common_name" or len(shared):
            assert (images.loc[shared, column] == originals.loc[shared, column]).all(), column
    # resolved lineages equal an independent batch resolution with the same rank hints
    shared = [s for s in images.index if originals.loc[s, "kingdom"]]
    expected = resolve_names(originals.loc[shared, "species_label"].tolist(),
                             hints=originals.loc[shared, ["kingdom", "phylum", "class", "order", "family", "genus"]])
    assert images.loc[shared, "species"].tolist() == expected["species"].tolist()
    assert images.loc[shared, "name_status"].tolist() == expected["status"].tolist()
    # the hand map gave a lineage (and common name) to a name the resolver cannot know
    fox = images[images.raw_name == "Mystery fox"]
    assert fox["species"].tolist() == ["Vulpes vulpes"] and fox["common_name"].tolist() == ["red fox"]
    assert fox["name_status"].tolist() == ["manual"]
    # names that could not be resolved are reported with counts, and not used
    report = pd.read_csv(out / "reports" / "unresolved_names.csv", keep_default_na=False).set_index("raw_name")
    assert report.loc["Notarealname bogusii", "status"] == "unresolved"
    assert report.loc["Notarealname bogusii", "count"] == 1
    assert report.loc["Morus", "status"] == "ambiguous" and report.loc["Morus", "count"] == 2
    assert not images.raw_name.isin(["Morus", "Notarealname bogusii"]).any()
    assert result.removed.get("unresolved_name") == 3
    stats = dataset_stats(out)
    assert stats["splits"]["train"]["samples"] == int((catalog.split == "train").sum())
    assert stats["taxa_per_rank"]["species"] == images["species"].nunique()


def test_existing_shards_as_a_source(tmp_path, manifest_build):
    """Shards of an earlier build are a source: names come back from the TreeOfLife members."""
    previous, _, _ = manifest_build
    config = write_config(tmp_path / "again.yaml", {
        "output": "out", "workers": 1,
        "sources": [{"name": "old", "kind": "webdataset", "path": str(previous / "train")}],
        "splits": {"val_fraction": 0.0, "train_small_fraction": 0.0}, "dedup": {"near": False},
        "shards": {"max_bytes": 200_000},
    })
    build(config, progress=False)
    out = tmp_path / "out"
    catalog = assert_shards_match_catalog(out)
    # the byte limit: a shard is closed once its payload reaches max_bytes (so at most one sample over)
    payloads = []
    for shard in sorted((out / "train").glob("shard-*.tar")):
        with tarfile.open(shard) as archive:
            payloads.append(sum(m.size for m in archive.getmembers()))
    assert len(payloads) >= 3 and max(payloads) <= 200_000 + 60_000
    old = pd.read_parquet(previous / schema.CATALOG_PARQUET)
    old = old[old.split == "train"].set_index("id")
    assert len(catalog) == len(old) and set(catalog.split) == {"train"}
    old_ids = catalog["source_id"].str.rsplit("/", n=1).str[1]
    for column in (*RANKS, "common_name"):
        assert catalog[column].tolist() == old.loc[old_ids, column].tolist(), column


def test_check_finds_truncated_and_incomplete_shards(tmp_path, manifest_build):
    import io
    import tarfile

    source, _, _ = manifest_build
    out = tmp_path / "copy"
    shutil.copytree(source, out)
    assert check_dataset(out).ok
    shards = sorted((out / "train").glob("shard-*.tar"))
    assert len(shards) >= 3
    # cut one shard in the middle of a member, another exactly at a member boundary
    data = shards[0].read_bytes()
    shards[0].write_bytes(data[: len(data) // 2 + 100])
    with tarfile.open(shards[1]) as archive:
        members = archive.getmembers()
    boundary = members[len(members) // 2].offset
    shards[1].write_bytes(shards[1].read_bytes()[:boundary])
    # drop the sci.txt of one sample in a third shard (a valid tar holding an incomplete sample)
    with tarfile.open(shards[2]) as archive:
        members = [(m, archive.extractfile(m).read()) for m in archive.getmembers()]
    dropped = next(m.name for m, _ in members if m.name.endswith(".sci.txt"))
    rewritten = tmp_path / "rewritten.tar"
    with tarfile.open(rewritten, "w") as archive:
        for member, payload in members:
            if member.name != dropped:
                archive.addfile(member, io.BytesIO(payload))
    os.replace(rewritten, shards[2])

    report = check_dataset(out, workers=2)
    problems = "\n".join(report.problems)
    assert not report.ok
    assert f"train/{shards[0].name}" in problems and f"train/{shards[1].name}" in problems
    assert "end-of-archive" in problems or "truncated" in problems
    assert f"{dropped.split('.')[0]}: missing sci.txt" in problems
    assert all(f"train/{s.name}" not in problems for s in shards[3:])


def test_config_errors_are_one_line(tmp_path):
    from taxoclip.data.config import ConfigError, parse_config

    good = {"output": "o", "sources": [{"kind": "folder", "path": "p"}]}
    assert parse_config(good, base=tmp_path).sources[0].path == tmp_path / "p"
    cases = [
        ({"output": "o"}, "give at least one source"),
        ({**good, "image": {"resize": "stretch"}}, "image.resize: 'stretch' is not one of: crop, pad, squash, shorter"),
        ({**good, "image": {"size": "big"}}, "image.size: expected an integer"),
        ({**good, "dedup": {"near_threshold": 40}}, "dedup.near_threshold: must be between 0 and 12"),
        ({**good, "spilts": {}}, "unknown key 'spilts'"),
        ({"output": "o", "sources": [{"kind": "folder", "path": "p", "url_column": "u"}]},
         "sources[0].url_column: only manifest sources take `url_column`"),
        ({"output": "o", "sources": [{"kind": "zip", "path": "p"}]}, "sources[0].kind: 'zip' is not one of"),
        ({"output": "o", "sources": [{"kind": "folder", "path": "a", "name": "x"},
                                     {"kind": "folder", "path": "b", "name": "x"}]}, "two sources are named 'x'"),
    ]
    for raw, message in cases:
        with pytest.raises(ConfigError) as caught:
            parse_config(raw, base=tmp_path, origin="c.yaml")
        assert message in str(caught.value) and "\n" not in str(caught.value)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("output: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad_yaml)


def test_shipped_configs_are_valid():
    configs = Path(__file__).resolve().parent.parent / "configs" / "data"
    config = load_config(configs / "nature-quizzer.yaml")
    source = config.sources[0]
    assert source.kind == "manifest" and source.path.name == "labels.csv" and source.path.is_file()
    assert config.image.resize == "crop" and config.splits.seed == 17
    example = load_config(configs / "example.yaml")
    assert [s.kind for s in example.sources] == ["folder", "manifest", "webdataset"]
    assert example.taxonomy.map["unknown wren sp."]["family"] == "Troglodytidae"


def test_sha256_column_is_the_source_bytes(manifest_build, photos_dir):
    out, table, _ = manifest_build
    catalog = pd.read_parquet(out / schema.CATALOG_PARQUET).drop_duplicates("id").head(5)
    for row in catalog.to_dict("records"):
        path = Path(row["source_id"])
        path = path if path.is_absolute() else photos_dir / path
        assert row["sha256"] == sha256_file(path)
