"""Does the text stay true to the attributes read from the photo?

For each attribute with a known vocabulary, the values are grouped into families of synonyms
(cotton; long sleeve = full sleeve; checked = plaid = gingham). The text contradicts an
attribute when it names a family other than the extracted value's family: "silk" in the text of
a cotton shirt. An attribute is covered when the text names the value itself or its family.

The vocabulary is English, so only English text is checked; other languages are written from the
same attributes in the same request. Colour is checked for coverage but never for contradiction:
garments carry secondary colours (white buttons, contrast stitching, a striped pattern), so a
second colour word is not evidence of a wrong main colour.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from shared.models.descriptions import GroundingReport, LocalizedDescription

CHECKED_LANGUAGE = "en"

# attribute name -> family -> phrases (lowercase; matched on word boundaries, plural 's' allowed)
VOCABULARY: dict[str, dict[str, tuple[str, ...]]] = {
    "fabric": {
        "cotton": ("cotton",),
        "linen": ("linen",),
        "silk": ("silk", "silky"),
        "wool": ("wool", "woollen", "woolen", "merino"),
        "polyester": ("polyester",),
        "nylon": ("nylon",),
        "viscose": ("viscose", "rayon"),
        "denim": ("denim",),
        "leather": ("leather",),
        "cashmere": ("cashmere",),
        "satin": ("satin",),
        "chiffon": ("chiffon",),
        "velvet": ("velvet",),
        "elastane": ("elastane", "spandex", "lycra"),
        "modal": ("modal",),
    },
    "sleeve_length": {
        "long": ("long sleeve", "long sleeved", "long-sleeve", "long-sleeved", "full sleeve"),
        "short": ("short sleeve", "short sleeved", "short-sleeve", "short-sleeved", "half sleeve"),
        "three-quarter": ("three-quarter sleeve", "3/4 sleeve", "three quarter sleeve"),
        "sleeveless": ("sleeveless",),
    },
    "fit": {
        "slim": ("slim fit", "slim-fit", "slim"),
        "regular": ("regular fit", "regular-fit", "regular", "classic fit"),
        "relaxed": ("relaxed fit", "loose fit", "relaxed", "loose", "oversized"),
        "skinny": ("skinny fit", "skinny"),
        "tailored": ("tailored fit", "tailored"),
    },
    "collar": {
        "button-down": ("button-down collar", "button down collar", "button-down"),
        "spread": ("spread collar", "spread"),
        "mandarin": ("mandarin collar", "band collar", "chinese collar", "mandarin"),
        "cutaway": ("cutaway collar", "cutaway"),
        "polo": ("polo collar",),
        "shawl": ("shawl collar",),
        "peter-pan": ("peter pan collar",),
        "wingtip": ("wingtip collar", "wing collar"),
    },
    "neck_type": {
        "round": ("round neck", "crew neck", "crewneck", "round-neck", "round"),
        "v-neck": ("v-neck", "v neck", "v"),
        "henley": ("henley",),
        "boat": ("boat neck", "bateau"),
        "high": ("high neck", "mock neck", "turtleneck", "turtle neck", "high"),
        "scoop": ("scoop neck", "scoop"),
        "polo": ("polo neck", "polo"),
    },
    "pattern": {
        "solid": ("solid", "plain", "solid-colour", "solid-color"),
        "striped": ("striped", "stripe", "pinstripe", "pinstriped"),
        "checked": ("checked", "check", "plaid", "tartan", "gingham"),
        "printed": ("printed", "print", "floral", "graphic", "polka dot"),
    },
    "colour": {},
}
# Phrases that only identify a value when read from the model's short answer; in running text
# they are too common ("a regular day", "a high street look") to count as a claim.
_ANSWER_ONLY = frozenset({
    "slim", "regular", "relaxed", "loose", "skinny", "tailored", "spread", "mandarin", "cutaway",
    "round", "v", "high", "scoop", "polo", "check",
})  # fmt: skip
_NO_CONTRADICTION_CHECK = frozenset({"colour", "color"})
# The attribute model is trained on answers like "Fabric: Cotton"; drop the label.
_LABEL = re.compile(r"^\s*[A-Za-z][A-Za-z _-]{0,30}:\s*")


def normalize_answer(answer: str) -> str:
    return " ".join(_LABEL.sub("", answer).strip().lower().split())


def _pattern(phrases: Iterable[str]) -> re.Pattern[str]:
    alternatives = sorted((re.escape(phrase) for phrase in phrases), key=len, reverse=True)
    return re.compile(r"(?<![\w-])(?:" + "|".join(alternatives) + r")s?(?![\w-])")


@dataclass(frozen=True)
class _Family:
    name: str
    in_answer: re.Pattern[str]
    in_text: re.Pattern[str] | None


@lru_cache(maxsize=256)
def _families(attribute: str) -> tuple[_Family, ...]:
    # Cached: the vocabulary is constant, and building its patterns on every call dominated the
    # time of a catalog batch (about 7 ms per product).
    families = []
    for name, phrases in VOCABULARY.get(attribute, {}).items():
        textual = [phrase for phrase in phrases if phrase not in _ANSWER_ONLY]
        families.append(
            _Family(name, _pattern((name, *phrases)), _pattern(textual) if textual else None)
        )
    return tuple(families)


def family_of(attribute: str, value: str) -> str | None:
    """The vocabulary family an extracted answer belongs to, if exactly one matches."""
    answer = normalize_answer(value)
    matches = {family.name for family in _families(attribute) if family.in_answer.search(answer)}
    return matches.pop() if len(matches) == 1 else None


def _text_of(description: LocalizedDescription) -> str:
    parts = [
        description.title,
        description.description,
        *description.bullets,
        *description.keywords,
    ]
    return " ".join(" ".join(parts).lower().split())


def check_grounding(
    attributes: Mapping[str, str], descriptions: Mapping[str, LocalizedDescription]
) -> GroundingReport:
    """Report covered and missing attributes and contradictions in the English text."""
    english = descriptions.get(CHECKED_LANGUAGE)
    if english is None:
        return GroundingReport(checked_language=None, covered=[], missing=[], contradictions=[])
    text = _text_of(english)
    covered: list[str] = []
    missing: list[str] = []
    contradictions: list[str] = []
    for attribute, value in attributes.items():
        answer = normalize_answer(value)
        if not answer:
            continue
        own_family = family_of(attribute, value)
        families = _families(attribute)
        own = next((family for family in families if family.name == own_family), None)
        mentioned = _pattern([answer]).search(text) is not None or (
            own is not None and own.in_text is not None and own.in_text.search(text) is not None
        )
        (covered if mentioned else missing).append(attribute)
        if own_family is None or attribute in _NO_CONTRADICTION_CHECK:
            continue
        for family in families:
            if family.name == own_family or family.in_text is None:
                continue
            found = family.in_text.search(text)
            if found:
                contradictions.append(
                    f"{attribute} is {answer!r} but the text says {found.group(0)!r}"
                )
    return GroundingReport(
        checked_language=CHECKED_LANGUAGE,
        covered=covered,
        missing=missing,
        contradictions=contradictions,
    )
