"""The grounding check: coverage and contradictions against the extracted attributes."""

from __future__ import annotations

from descriptions.logic.grounding import check_grounding, family_of, normalize_answer
from shared.models.descriptions import LocalizedDescription
from tests.descriptions_support import ATTRIBUTES, grounded_entry


def _english(**changes: object) -> dict[str, LocalizedDescription]:
    return {"en": LocalizedDescription.model_validate({**grounded_entry("en"), **changes})}


def test_labelled_answers_are_normalized() -> None:
    assert normalize_answer("Fabric:  Cotton ") == "cotton"
    assert family_of("sleeve_length", "Long Sleeves") == "long"
    assert family_of("fabric", "Fabric: Cotton") == "cotton"
    assert family_of("fabric", "unobtainium") is None


def test_a_faithful_text_covers_the_attributes_without_contradiction() -> None:
    report = check_grounding(ATTRIBUTES, _english())

    assert report.checked_language == "en"
    assert report.contradictions == []
    assert {"fabric", "fit", "collar", "pattern", "sleeve_length", "colour"} <= set(report.covered)
    assert "neck_type" in report.missing


def test_silk_in_the_text_of_a_cotton_shirt_is_a_contradiction() -> None:
    report = check_grounding(
        ATTRIBUTES, _english(description="A flowing silk shirt with a slim fit.")
    )

    assert report.contradictions == ["fabric is 'cotton' but the text says 'silk'"]


def test_short_sleeves_contradict_long_sleeves_in_any_spelling() -> None:
    report = check_grounding(ATTRIBUTES, _english(bullets=["Short-sleeved for summer"]))

    assert any("sleeve_length" in item for item in report.contradictions)


def test_a_second_colour_is_not_a_contradiction() -> None:
    report = check_grounding(ATTRIBUTES, _english(bullets=["White buttons", "Red stitching"]))

    assert report.contradictions == []


def test_common_words_in_running_text_are_not_claims() -> None:
    # "regular" and "high" name fits and necklines only in a model's short answer.
    report = check_grounding(
        ATTRIBUTES, _english(description="A regular favourite for a high street look in cotton.")
    )

    assert report.contradictions == []


def test_without_english_the_check_says_what_it_did_not_read() -> None:
    german = {"de": LocalizedDescription.model_validate(grounded_entry("de"))}

    report = check_grounding(ATTRIBUTES, german)

    assert report.checked_language is None
    assert report.covered == report.missing == report.contradictions == []
