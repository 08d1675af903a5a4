"""Cleaning labels as they come from the wild."""

import pytest

from taxoclip.taxonomy.names import binomial_key, clean_label, parse_name

CASES = [
    ("Amanita muscaria (L.) Lam., 1783", "Amanita muscaria"),
    ("Passer domesticus (Linnaeus, 1758)", "Passer domesticus"),
    ("Corvus corax, Linnaeus 1758", "Corvus corax"),
    ("Picea abies (L.) H. Karst.", "Picea abies"),
    ("Rosa canina L.", "Rosa canina"),
    ("Boletus edulis Bull.: Fr.", "Boletus edulis"),
    ("Agaricus campestris L. ex Fr.", "Agaricus campestris"),
    ("Aegopodium_podagraria", "Aegopodium podagraria"),
    ("Tomato___Late_blight", "Tomato Late blight"),
    ("Apple___Black_rot", "Apple Black rot"),
    ("  pica   HUDSONIA ", "Pica hudsonia"),
    ("PICA HUDSONIA", "Pica hudsonia"),
    ("pica hudsonia", "Pica hudsonia"),
    ("Ursus arctos horribilis", "Ursus arctos"),
    ("Ursus arctos subsp. horribilis Ord, 1815", "Ursus arctos"),
    ("Pinus sylvestris var. hamata Steven", "Pinus sylvestris"),
    ("Quercus robur f. fastigiata", "Quercus robur"),
    ("Mentha × piperita L.", "Mentha × piperita"),
    ("Mentha x piperita", "Mentha × piperita"),
    ("cf. Larus argentatus", "Larus argentatus"),
    ("Larus cf. argentatus", "Larus argentatus"),
    ("Quercus sp.", "Quercus"),
    ("Corvidae", "Corvidae"),
    ("00001_Animalia_Annelida_Clitellata_Haplotaxida_Lumbricidae_Lumbricus_terrestris", "Lumbricus terrestris"),
]


@pytest.mark.parametrize(("raw", "expected"), CASES)
def test_clean_label(raw, expected):
    assert clean_label(raw) == expected


def test_infraspecific_part_and_qualifiers_are_kept_aside():
    parsed = parse_name("Ursus arctos subsp. horribilis Ord, 1815")
    assert (parsed.genus, parsed.epithet, parsed.infraspecific) == ("Ursus", "arctos", "subsp. horribilis")
    assert parse_name("Larus cf. argentatus").qualifier == "cf."
    assert parse_name("Quercus sp.").qualifier == "sp."


def test_inat21_folder_names_carry_the_whole_lineage():
    parsed = parse_name("00001_Animalia_Annelida_Clitellata_Haplotaxida_Lumbricidae_Lumbricus_terrestris")
    assert parsed.lineage["order"] == "Haplotaxida" and parsed.binomial == "Lumbricus terrestris"


def test_free_text_labels_stay_text():
    parsed = parse_name("Tomato___Late_blight")
    assert parsed.genus == "" and parsed.text == "Tomato Late blight"
    assert clean_label("") == ""


def test_binomial_key_matches_across_formattings():
    keys = {binomial_key(s) for s in ("Ursus arctos", "ursus_ARCTOS L.", " Ursus  arctos (Linnaeus, 1758)", "URSUS ARCTOS")}
    assert keys == {"ursus arctos"}
