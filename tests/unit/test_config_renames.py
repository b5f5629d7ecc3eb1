"""Renamed keys: the new key is read, the old one still works for one release with a one-line
warning, and both at once are refused."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from infra.config import RENAMED_KEYS, ConfigError, load_stage_config
from infra.models import VQA
from tests.support import cdk_json_context

REMOVAL = "(the old key will be removed in the next release)"


@pytest.fixture
def context() -> dict[str, Any]:
    return copy.deepcopy(cdk_json_context())


def _dev(context: dict[str, Any]) -> dict[str, Any]:
    stage: dict[str, Any] = context["atelier"]["stages"]["dev"]
    return stage


def test_the_shipped_configuration_uses_no_deprecated_key(
    context: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    for stage in ("dev", "prod"):
        load_stage_config(context, stage)
    assert capsys.readouterr().err == ""


def test_the_vqa_endpoint_name_is_a_vqa_hosting_setting(context: dict[str, Any]) -> None:
    _dev(context)["vqa"] = {"hosting": {"endpoint_name": "team-attributes"}}
    config = load_stage_config(context, "dev")
    assert config.vqa.hosting.endpoint_name == "team-attributes"
    assert VQA.endpoint_name(config) == "team-attributes"


def test_the_old_endpoint_name_key_still_works_with_a_warning(
    context: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    _dev(context)["descriptions"] = {"endpoint_name": "team-attributes"}
    config = load_stage_config(context, "dev")
    assert VQA.endpoint_name(config) == "team-attributes"
    # The attribute keeps its old name for one release too.
    assert config.descriptions.endpoint_name == "team-attributes"
    assert capsys.readouterr().err.splitlines() == [
        "warning: stages.dev.descriptions.endpoint_name is deprecated; use "
        f"vqa.hosting.endpoint_name {REMOVAL}"
    ]


def test_the_old_inpainting_training_key_still_works_with_a_warning(
    context: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    _dev(context)["dreambooth"] = {"inpainting_training": {"instance_type": "ml.p3.2xlarge"}}
    config = load_stage_config(context, "dev")
    # Laid over the defaults' `styling.training`, key by key.
    assert config.styling.training.instance_type == "ml.p3.2xlarge"
    assert config.styling.training.clipseg_model == "CIDAS/clipseg-rd64-refined"
    assert config.dreambooth.inpainting_training is config.styling.training
    assert capsys.readouterr().err.splitlines() == [
        "warning: stages.dev.dreambooth.inpainting_training is deprecated; use "
        f"styling.training {REMOVAL}"
    ]


def test_styling_training_is_the_new_key(context: dict[str, Any]) -> None:
    _dev(context)["styling"] = {"training": {"instance_type": "ml.p3.2xlarge"}}
    config = load_stage_config(context, "dev")
    assert config.styling.training.instance_type == "ml.p3.2xlarge"
    assert config.dreambooth.training.instance_type == "ml.g5.2xlarge"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ({"descriptions": {"endpoint_name": "a"}}, {"vqa": {"hosting": {"endpoint_name": "b"}}}),
        (
            {"dreambooth": {"inpainting_training": {"use_spot": True}}},
            {"styling": {"training": {"use_spot": True}}},
        ),
    ],
)
def test_old_and_new_key_together_are_refused(
    context: dict[str, Any], old: dict[str, Any], new: dict[str, Any]
) -> None:
    _dev(context).update({**old, **new})
    with pytest.raises(ConfigError) as caught:
        load_stage_config(context, "dev")
    message = str(caught.value)
    (rename,) = [r for r in RENAMED_KEYS if r.old[0] in old]
    assert message == (
        f"stages.dev.{rename.old_key} and stages.dev.{rename.new_key} are both set; keep only "
        f"{rename.new_key} (stages.dev.{rename.old_key} is its deprecated name; the old key will "
        "be removed in the next release)"
    )


def test_an_old_key_in_the_defaults_moves_too(
    context: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    defaults = context["atelier"]["defaults"]
    defaults["dreambooth"]["inpainting_training"] = defaults["styling"].pop("training")
    assert load_stage_config(context, "prod").styling.training.max_runtime_hours >= 1
    assert "warning: defaults.dreambooth.inpainting_training is deprecated" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("section", ["dreambooth", "styling"])
def test_only_the_vqa_endpoint_can_be_named(context: dict[str, Any], section: str) -> None:
    _dev(context)[section] = {"hosting": {"endpoint_name": "elsewhere"}}
    with pytest.raises(ConfigError, match=rf"{section}\.hosting\.endpoint_name is not a known key"):
        load_stage_config(context, "dev")


def test_errors_in_a_new_key_name_the_new_key(context: dict[str, Any]) -> None:
    _dev(context)["styling"] = {"training": {"clipseg_model_revision": "v1.0"}}
    with pytest.raises(ConfigError) as caught:
        load_stage_config(context, "dev")
    assert str(caught.value).startswith(
        "stage 'dev': styling.training.clipseg_model_revision = 'v1.0' is not valid"
    )
