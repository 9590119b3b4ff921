"""Name keys across scripts' case rules: Turkish dotted and dotless i match, nothing else new collides."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from invoiced_keap.keys import normalise_name

TURKISH = "abcçdefgğhıijklmnoöprsştuüvyz"
TURKISH_UPPER = str.maketrans({"i": "İ", "ı": "I"})  # Turkish case rules; the rest as str.upper
TURKISH_LOWER = str.maketrans({"İ": "i", "I": "ı"})
SUFFIXES = st.sampled_from(["", " Ltd", " A.Ş.", " Ltd. Şti.", " Inc"])
turkish_words = st.lists(st.text(st.sampled_from(TURKISH), min_size=1, max_size=12), min_size=1, max_size=4).map(" ".join)


def turkish_upper(text: str) -> str:
    return text.translate(TURKISH_UPPER).upper()


def turkish_lower(text: str) -> str:
    return text.translate(TURKISH_LOWER).lower()


def test_the_reported_turkish_names_match() -> None:
    assert normalise_name("ÇİFTÇİ Tarım") == normalise_name("Çiftçi Tarım")
    assert normalise_name("İSTANBUL Halı Ltd") == normalise_name("istanbul halı ltd") == normalise_name("ISTANBUL HALI LTD")


@given(turkish_words, SUFFIXES)
def test_a_turkish_name_matches_in_any_case(name: str, suffix: str) -> None:
    spellings = {name + suffix, turkish_upper(name) + suffix, turkish_lower(turkish_upper(name)) + suffix,
                 (name + suffix).upper(), (name + suffix).title()}
    assert len({normalise_name(spelling) for spelling in spellings}) == 1


@given(turkish_words, turkish_words, SUFFIXES, SUFFIXES)
def test_names_that_differ_in_more_than_case_and_the_dot_on_an_i_do_not_collide(a: str, b: str, suffix_a: str,
                                                                                  suffix_b: str) -> None:
    def letters(text: str) -> str:
        return " ".join("".join(c for c in text.replace("ı", "i") if c.isalnum() or c == " ").split())

    if letters((a + suffix_a).casefold()) != letters((b + suffix_b).casefold()):
        assert normalise_name(turkish_upper(a) + suffix_a) != normalise_name(b + suffix_b)


def test_other_marks_still_tell_names_apart() -> None:
    assert normalise_name("Çiftçi") != normalise_name("Ciftci")
    assert normalise_name("Öz Gıda") != normalise_name("Oz Gida")
    assert normalise_name("Acme Ltd") != normalise_name("Acme Inc")
