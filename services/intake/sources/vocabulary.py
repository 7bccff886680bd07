"""Answer texts to codes: taxonomy labels, country names and language names. Pure.

Each lookup raises `Unmapped` with a message naming the value, so that the adapter can answer
422 naming the field and the value.
"""

from __future__ import annotations

import re
import reprlib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import pycountry

from shared.taxonomy import load_taxonomy


class Unmapped(ValueError):
    """An answer that has no code."""


_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxstring, _BRIEF.maxother = 3, 80, 80
_BRIEF.maxlist = _BRIEF.maxdict = _BRIEF.maxtuple = 5


def brief(value: Any) -> str:
    """`repr(value)` for an error message, cut short: a sender's answer may be a megabyte, or
    nested deeper than `repr` can go."""
    return _BRIEF.repr(value)


def key(text: str) -> str:
    """Comparison key of an answer text: NFC, case-folded, single spaces."""
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


def _without_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(char for char in decomposed if not unicodedata.combining(char))


@dataclass(frozen=True)
class Vocabulary:
    """One kind of code (respondent types, SDGs, ...): label or code text -> code."""

    what: str
    codes: Mapping[str, str]

    def code(self, text: Any, aliases: Mapping[str, str]) -> str:
        """The code of `text` (a code, its label, or one of this survey's `aliases`)."""
        if not isinstance(text, str) or not text.strip():
            raise Unmapped(f"expected a {self.what} label, got {brief(text)}")
        found = self.codes.get(key(text))
        if found is None:
            alias = aliases.get(key(text))
            found = alias if alias in self.codes.values() else None
        if found is None:
            raise Unmapped(f"unknown {self.what} {brief(text)}")
        return found

    def codes_of(self, values: Any, aliases: Mapping[str, str]) -> list[str]:
        """The codes of a list of texts (a single text counts as a list of one)."""
        items = [values] if isinstance(values, str) else values
        if not isinstance(items, list):
            raise Unmapped(f"expected a list of {self.what} labels, got {brief(values)}")
        return [self.code(item, aliases) for item in items if item not in ("", None)]


_SDG_NUMBER = re.compile(r"^(?:sdg|goal)\s*[-#]?\s*(\d{1,2})\b", re.IGNORECASE)


@dataclass(frozen=True)
class SdgVocabulary(Vocabulary):
    """SDGs also go by their number: "SDG 11", "Goal 11: Sustainable cities ..."."""

    def code(self, text: Any, aliases: Mapping[str, str]) -> str:
        """The SDG code of a label, a code, or a text starting with "SDG <n>"."""
        if isinstance(text, str):
            numbered = _SDG_NUMBER.match(text.strip())
            if numbered and f"sdg-{int(numbered.group(1))}" in self.codes.values():
                return f"sdg-{int(numbered.group(1))}"
        return super().code(text, aliases)


def _vocabulary(*tables: Mapping[str, str]) -> dict[str, str]:
    codes: dict[str, str] = {}
    for table in tables:
        for code, label in table.items():
            codes[key(code)] = code
            codes[key(label)] = code
    return codes


@dataclass(frozen=True)
class Vocabularies:
    """Every vocabulary an answer may be mapped to."""

    respondent_types: Vocabulary
    sdgs: Vocabulary
    themes: Vocabulary
    interests: Vocabulary


@cache
def vocabularies() -> Vocabularies:
    """The taxonomy's labels and codes, read once."""
    taxonomy = load_taxonomy()
    return Vocabularies(
        respondent_types=Vocabulary("respondent type", _vocabulary(taxonomy.respondent_types)),
        sdgs=SdgVocabulary("SDG", _vocabulary(taxonomy.sdgs)),
        themes=Vocabulary("theme", _vocabulary(taxonomy.themes)),
        interests=Vocabulary(
            "theme or modality", _vocabulary(taxonomy.themes, taxonomy.modalities)
        ),
    )


# Names in common use that ISO 3166 spells otherwise; each names one country only.
_COUNTRY_ALIASES = {
    "turkey": "TR",
    "turkiye": "TR",
    "ivory coast": "CI",
    "cape verde": "CV",
    "uk": "GB",
    "great britain": "GB",
    "usa": "US",
    "dr congo": "CD",
    "drc": "CD",
    "swaziland": "SZ",
    "east timor": "TL",
    "burma": "MM",
    "vatican": "VA",
}


_LONGEST_COUNTRY_NAME = 80


def country_code(name: Any) -> str:
    """ISO 3166-1 alpha-2 code of a country name or code ("Viet Nam", "Türkiye", "lk")."""
    if not isinstance(name, str) or not name.strip():
        raise Unmapped(f"expected a country name, got {brief(name)}")
    if len(name) > _LONGEST_COUNTRY_NAME:
        raise Unmapped(f"unknown country {name[:_LONGEST_COUNTRY_NAME]!r}...")
    return _country_code(" ".join(name.split()))


@lru_cache(maxsize=2048)
def _country_code(text: str) -> str:
    plain = _without_accents(text).casefold()
    if plain in _COUNTRY_ALIASES:
        return _COUNTRY_ALIASES[plain]
    try:
        return str(pycountry.countries.lookup(text).alpha_2)
    except LookupError:
        pass
    # A fuzzy match is taken only when it names exactly one country ("Russia", "Brunei"),
    # never when it could be several ("Korea", "Congo", "Guinea"), nor for a mere few letters.
    try:
        found = pycountry.countries.search_fuzzy(text) if len(text) >= 4 else []
    except LookupError:
        found = []
    if len(found) == 1:
        return str(found[0].alpha_2)
    raise Unmapped(f"unknown country {brief(text)}")


def alpha_2(code: Any) -> str:
    """An ISO 3166-1 alpha-2 code in any case ("vn"), upper-cased; nothing else is accepted."""
    if isinstance(code, str) and pycountry.countries.get(alpha_2=code.strip().upper()):
        return code.strip().upper()
    raise Unmapped(f"unknown country {brief(code)}")


_LANGUAGES = {
    "en": ("english", "anglais", "inglés", "ingles", "английский", "الإنجليزية", "英语", "英文"),
    "fr": ("français", "francais", "french", "francés", "frances", "французский", "الفرنسية"),
    "es": ("español", "espanol", "spanish", "espagnol", "castellano", "испанский", "الإسبانية"),
    "ar": ("العربية", "عربي", "arabic", "arabe", "árabe", "арабский", "阿拉伯语"),
    "zh": ("中文", "汉语", "漢語", "简体中文", "chinese", "chinois", "chino", "китайский"),
    "ru": ("русский", "russian", "russe", "ruso", "الروسية", "俄语", "俄文"),
}
_LANGUAGE_NAMES = {key(name): code for code, names in _LANGUAGES.items() for name in names} | {
    code: code for code in _LANGUAGES
}


def language_code(name: Any) -> str:
    """The code (en, fr, es, ar, zh, ru) of a language name, in English or in itself."""
    if not isinstance(name, str):
        raise Unmapped(f"expected a language, got {brief(name)}")
    found = _LANGUAGE_NAMES.get(key(name))
    if found is None:
        raise Unmapped(f"unknown language {brief(name)}; expected one of the six UN languages")
    return found


_YES = {"yes", "y", "true", "1", "oui", "sí", "si", "да", "نعم", "是"}
_NO = {"no", "n", "false", "0", "non", "нет", "لا", "否"}


def consent(value: Any) -> bool:
    """A yes/no answer as a boolean (booleans, "yes"/"no" and their translations)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and key(value) in _YES:
        return True
    if isinstance(value, str) and key(value) in _NO:
        return False
    raise Unmapped(f"expected yes or no, got {brief(value)}")
