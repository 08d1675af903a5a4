"""Every text type renders exactly as the original shards (BIOCLIP.md section 2)."""

import pytest

from taxoclip.data.schema import MEMBERS, sample_texts
from taxoclip.taxonomy import RANKS, Taxon, caption, render, tol_text
from taxoclip.taxonomy.templates import bioclip_templates, openai_templates, templates
from taxoclip.taxonomy.text import TEXT_TYPES, TRAINING_TEXT_TYPES, text_type_key

MAGPIE = Taxon("Animalia", "Chordata", "Aves", "Passeriformes", "Corvidae", "Pica", "hudsonia", "black-billed magpie")
TAXONOMIC = "Animalia Chordata Aves Passeriformes Corvidae Pica hudsonia"
TAGGED = "kingdom Animalia phylum Chordata class Aves order Passeriformes family Corvidae genus Pica species hudsonia"


def test_each_text_type_matches_the_paper_strings():
    assert render(MAGPIE, "taxon") == TAXONOMIC
    assert render(MAGPIE, "sci") == "Pica hudsonia"
    assert render(MAGPIE, "com") == "black-billed magpie"
    assert render(MAGPIE, "taxonTag") == TAGGED
    assert render(MAGPIE, "sci_com") == "Pica hudsonia with common name black-billed magpie"
    assert render(MAGPIE, "taxon_com") == f"{TAXONOMIC} with common name black-billed magpie"
    assert render(MAGPIE, "taxonTag_com") == f"{TAGGED} with common name black-billed magpie"
    assert caption(render(MAGPIE, "sci")) == "a photo of Pica hudsonia."


def test_shard_members_are_the_eleven_of_the_original():
    texts = sample_texts(MAGPIE)
    assert set(texts) | {"jpg"} == set(MEMBERS) and len(MEMBERS) == 11
    assert texts["scientific_name.txt"] == "Pica hudsonia"
    assert texts["taxonomic_name.txt"] == TAXONOMIC
    assert texts["common_name.txt"] == "black-billed magpie"
    assert texts["taxonTag_com.txt"] == f"a photo of {TAGGED} with common name black-billed magpie."
    assert texts["taxon.txt"] == f"a photo of {TAXONOMIC}."


def test_missing_ranks_are_dropped_and_common_falls_back():
    genus_only = Taxon("Animalia", "Chordata", "Aves", "", "Corvidae", "Pica", "")
    assert render(genus_only, "taxon") == "Animalia Chordata Aves Corvidae Pica"
    assert render(genus_only, "taxonTag") == "kingdom Animalia phylum Chordata class Aves family Corvidae genus Pica"
    assert render(genus_only, "com") == "Pica"  # no common name: scientific
    family_only = Taxon("Animalia", "Chordata", "Aves", "Passeriformes", "Corvidae")
    assert render(family_only, "sci") == ""
    assert render(family_only, "com") == "Animalia Chordata Aves Passeriformes Corvidae"  # then taxonomic
    assert render(family_only, "sci_com") == " with common name Animalia Chordata Aves Passeriformes Corvidae"


def test_taxon_normalises_case_binomials_and_placeholders():
    taxon = Taxon.from_ranks({"kingdom": "animalia", "phylum": "CHORDATA", "cls": "aves", "order": "unknown",
                              "family": "corvidae", "genus": "pica", "species": "Pica Hudsonia"})
    assert taxon.ranks == ("Animalia", "Chordata", "Aves", "", "Corvidae", "Pica", "hudsonia")
    assert taxon.binomial == "Pica hudsonia" and taxon.get("species") == "Pica hudsonia"
    assert taxon.deepest_rank == "species" and not taxon.complete
    assert Taxon.from_tol_entry(MAGPIE.to_tol_entry()) == MAGPIE
    assert MAGPIE.prefix("family") == ("Animalia", "Chordata", "Aves", "Passeriformes", "Corvidae")
    assert MAGPIE.truncated("genus").ranks[-1] == "" and MAGPIE.truncated("genus").common == ""
    assert RANKS[2] == "class"


def test_tree_of_life_text_is_ranks_then_common_name():
    assert tol_text(MAGPIE) == f"{TAXONOMIC} black-billed magpie"
    assert tol_text(Taxon("Fungi", "", "", "", "", "Amanita", "muscaria")) == "Fungi Amanita muscaria"


def test_templates_are_openai_80_plus_bioclip_81():
    openai = openai_templates()
    assert len(openai) == 80 and len(set(openai)) == 80
    assert openai[0] == "a bad photo of a {}." and "itap of my {}." in openai
    assert bioclip_templates() == ("a photo of {}.", *openai)
    assert templates("bioclip")[0].format("Pica hudsonia") == "a photo of Pica hudsonia."
    with pytest.raises(ValueError):
        templates("imagenet")


def test_text_type_keys_accept_reader_case_and_aliases():
    assert text_type_key("taxontag_com") == "taxonTag_com"
    assert text_type_key("scientific") == "sci"
    assert set(TRAINING_TEXT_TYPES) <= set(TEXT_TYPES)
    with pytest.raises(ValueError, match="unknown text type"):
        text_type_key("latin")
