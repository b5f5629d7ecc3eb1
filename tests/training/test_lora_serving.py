"""The SDXL many-adapter handler, on a tiny SDXL built from config, through the real toolkit.

Adapters are real LoRA weights: peft layers on the tiny UNet with random non-zero `lora_B` (a
fresh adapter's `lora_B` is zero and would change nothing), saved the way the training script
saves them (`StableDiffusionXLPipeline.save_lora_weights`), under the names the store reads.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
import threading
import weakref
from pathlib import Path
from typing import Any

import boto3
import pytest
import torch
from diffusers import StableDiffusionXLPipeline
from diffusers.utils import convert_state_dict_to_diffusers
from lora_serving import inference
from lora_serving.adapter_cache import adapter_parameter_bytes, estimated_bytes
from lora_serving.adapter_store import METADATA_FILE, WEIGHTS_FILE
from lora_serving.package import write_code_dir
from mms.service import PredictionException
from moto import mock_aws
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from tests.sdxl_model_support import build_tiny_sdxl
from tests.toolkit_support import invoke, served

FAST = {"num_inference_steps": 2, "width": 64, "height": 64, "seed": 5}
ATTENTION = ["to_q", "to_k", "to_v", "to_out.0"]


def save_adapter(
    base: Path, folder: Path, *, seed: int, rank: int = 4, targets: list[str] | None = None
) -> Path:
    """A LoRA adapter of the tiny UNet with random non-zero weights, in `folder`."""
    pipeline = StableDiffusionXLPipeline.from_pretrained(base)
    pipeline.unet.add_adapter(
        LoraConfig(r=rank, lora_alpha=rank, target_modules=targets or ATTENTION)
    )
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in pipeline.unet.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipeline.unet))
    folder.mkdir(parents=True)
    StableDiffusionXLPipeline.save_lora_weights(
        folder, unet_lora_layers=layers, weight_name=WEIGHTS_FILE, safe_serialization=True
    )
    (folder / METADATA_FILE).write_text(json.dumps({"rank": rank, "seed": seed}))
    return folder


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The endpoint's archive: tiny SDXL at the root, the handler in code/."""
    model_dir = build_tiny_sdxl(tmp_path_factory.mktemp("lora-endpoint"))
    write_code_dir(model_dir)
    return model_dir


@pytest.fixture(scope="module")
def adapters(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("adapters")
    for seed, name in enumerate(("red-mug", "blue-vase", "green-lamp"), start=1):
        save_adapter(archive, root / name, seed=seed)
    # Rank 16: four times a rank-4 adapter's bytes.
    save_adapter(archive, root / "big-rug", seed=9, rank=16)
    return root


@pytest.fixture
def endpoint(
    archive: Path, adapters: Path, monkeypatch: pytest.MonkeyPatch
) -> inference.LoadedModel:
    monkeypatch.setenv("LORA_ADAPTERS_DIR", str(adapters))
    return inference.model_fn(str(archive))


def images(model: inference.LoadedModel, **fields: Any) -> list[str]:
    answer = inference.predict_fn({"prompt": "a product photo", **FAST, **fields}, model)
    assert answer["adapter"] == fields.get("adapter")
    result: list[str] = answer["generated_images"]
    return result


def rank4_bytes(adapters: Path) -> int:
    return estimated_bytes(adapters / "red-mug" / WEIGHTS_FILE, torch.float32)


def test_two_adapters_on_one_endpoint_differ_from_each_other_and_from_the_base(
    archive: Path, adapters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LORA_ADAPTERS_DIR", str(adapters))
    with served(archive) as service:

        def ask(**fields: Any) -> dict[str, Any]:
            body = json.dumps({"prompt": "a product photo", **FAST, **fields}).encode()
            answer: dict[str, Any] = json.loads(invoke(service, body))
            return answer

        base = ask()
        red, blue = ask(adapter="red-mug"), ask(adapter="blue-vase")
        base_again = ask()

    assert (base["adapter"], red["adapter"], blue["adapter"]) == (None, "red-mug", "blue-vase")
    pictures = [answer["generated_images"][0] for answer in (base, red, blue)]
    assert len(set(pictures)) == 3
    # Loaded adapters no longer touch a request that names none.
    assert base_again == base


def test_switching_back_to_an_adapter_gives_its_first_image_and_scale_zero_is_the_base(
    endpoint: inference.LoadedModel,
) -> None:
    first = images(endpoint, adapter="red-mug")
    images(endpoint, adapter="blue-vase")
    assert images(endpoint, adapter="red-mug") == first
    # The scale reaches the adapter: at 0 it adds nothing, at 0.5 something else.
    assert images(endpoint, adapter="red-mug", adapter_scale=0.0) == images(endpoint)
    assert images(endpoint, adapter="red-mug", adapter_scale=0.5) not in (first, images(endpoint))
    assert endpoint.adapters.loaded == ["blue-vase", "red-mug"]
    # Adapters load outside inference mode: peft sets requires_grad on them when switching,
    # which torch refuses for inference tensors anywhere but inside inference mode.
    lora = [p for n, p in endpoint.pipeline.unet.named_parameters() if ".lora_" in n]
    assert lora
    assert not any(parameter.is_inference() for parameter in lora)


def test_eviction_keeps_the_adapters_within_the_budget_least_recently_used_first(
    archive: Path, adapters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given room for two rank-4 adapters and a half, not three (a whole-MiB setting is far more
    # than these tiny adapters: the budget is set on the cache itself; the setting is read below)
    size = rank4_bytes(adapters)
    monkeypatch.setenv("LORA_ADAPTERS_DIR", str(adapters))
    monkeypatch.setenv("LORA_CACHE_MAX_MB", "3")
    model = inference.model_fn(str(archive))
    cache = model.adapters
    assert cache.max_bytes == 3 * 2**20
    cache.max_bytes = 2 * size + size // 2
    # (what the pipeline holds the moment each load finishes, before anything is tidied up)
    peaks: list[int] = []
    load = model.pipeline.load_lora_weights

    def load_and_measure(*args: Any, **kwargs: Any) -> None:
        load(*args, **kwargs)
        present = model.pipeline.get_list_adapters()["unet"]
        peaks.append(sum(adapter_parameter_bytes(model.pipeline, n) for n in present))

    model.pipeline.load_lora_weights = load_and_measure
    first_red = images(model, adapter="red-mug")
    red_parameters = [
        weakref.ref(parameter)
        for name, parameter in model.pipeline.unet.named_parameters()
        if ".red-mug." in name
    ]
    assert red_parameters

    # When three adapters are used, the red one least recently
    for name in ("blue-vase", "red-mug", "blue-vase", "green-lamp"):
        images(model, adapter=name)
        # Then the pipeline's own LoRA parameters never exceed the budget
        on_pipeline = sum(adapter_parameter_bytes(model.pipeline, n) for n in cache.loaded)
        assert on_pipeline == cache.used_bytes <= cache.max_bytes

    assert cache.loaded == ["blue-vase", "green-lamp"]
    # the room was made before loading: the budget held even mid-load
    assert len(peaks) == 3
    assert max(peaks) <= cache.max_bytes
    assert adapter_parameter_bytes(model.pipeline, "red-mug") == 0
    # and its tensors are gone, not just detached from the pipeline
    assert all(reference() is None for reference in red_parameters)
    assert set(model.pipeline.get_list_adapters()["unet"]) == {"blue-vase", "green-lamp"}

    # and the evicted adapter, used again, is reloaded and draws what it drew before
    assert images(model, adapter="red-mug") == first_red
    assert cache.loaded == ["green-lamp", "red-mug"]


def test_the_adapter_count_is_bounded_too(
    archive: Path, adapters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LORA_ADAPTERS_DIR", str(adapters))
    monkeypatch.setenv("LORA_CACHE_MAX_ADAPTERS", "1")
    model = inference.model_fn(str(archive))
    images(model, adapter="red-mug")
    images(model, adapter="blue-vase")
    assert model.adapters.loaded == ["blue-vase"]
    assert model.pipeline.get_list_adapters()["unet"] == ["blue-vase"]


def test_a_larger_adapter_makes_room_and_one_larger_than_the_budget_is_refused(
    archive: Path, adapters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = rank4_bytes(adapters)
    assert estimated_bytes(adapters / "big-rug" / WEIGHTS_FILE, torch.float32) == 4 * size
    monkeypatch.setenv("LORA_ADAPTERS_DIR", str(adapters))
    model = inference.model_fn(str(archive))
    # A budget (set directly: the setting is whole MiB) for four rank-4 adapters
    model.adapters.max_bytes = 4 * size
    for name in ("red-mug", "blue-vase"):
        images(model, adapter=name)
    images(model, adapter="big-rug")
    assert model.adapters.loaded == ["big-rug"]
    assert model.adapters.used_bytes == 4 * size

    # and, the budget cut to three, one larger than the whole budget is refused naming the setting
    model.adapters.max_bytes = 3 * size
    images(model, adapter="red-mug")  # big-rug no longer fits: evicted
    assert model.adapters.loaded == ["red-mug"]
    with pytest.raises(ValueError, match=r'adapter "big-rug" needs .* MiB.*LORA_CACHE_MAX_MB'):
        images(model, adapter="big-rug")
    assert model.adapters.loaded == ["red-mug"]


def test_an_unknown_adapter_is_a_400_naming_it(
    archive: Path, adapters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LORA_ADAPTERS_DIR", str(adapters))
    with served(archive) as service:
        for adapter, message in (
            ("no-such-mug", f'unknown adapter "no-such-mug": no {WEIGHTS_FILE}'),
            ("../red-mug", '"adapter" must be 1 to 63 lowercase letters'),
            ("Red_Mug", '"adapter" must be 1 to 63 lowercase letters'),
        ):
            body = json.dumps({"prompt": "a mug", "adapter": adapter, **FAST}).encode()
            with pytest.raises(PredictionException) as refused:
                invoke(service, body)
            assert refused.value.error_code == 400
            assert message in refused.value.message
            assert repr(adapter) in refused.value.message or f'"{adapter}"' in refused.value.message
        # and the endpoint still answers
        body = json.dumps({"prompt": "a mug", "adapter": "red-mug", **FAST}).encode()
        assert json.loads(invoke(service, body))["adapter"] == "red-mug"


def test_an_adapter_of_another_model_is_refused_and_leaves_nothing_behind(
    endpoint: inference.LoadedModel, adapters: Path, tmp_path: Path
) -> None:
    # Given an adapter whose layers have another width (another base model's)
    weights = (adapters / "red-mug" / WEIGHTS_FILE).read_bytes()
    from safetensors.torch import load_file, save_file

    tensors = load_file(adapters / "red-mug" / WEIGHTS_FILE)
    wrong = {key: torch.zeros(value.shape[0] + 3, value.shape[1]) for key, value in tensors.items()}
    endpoint.adapters.store.root = tmp_path  # type: ignore[attr-defined]
    (tmp_path / "odd-lamp").mkdir()
    save_file(wrong, tmp_path / "odd-lamp" / WEIGHTS_FILE)
    (tmp_path / "red-mug").mkdir()
    (tmp_path / "red-mug" / WEIGHTS_FILE).write_bytes(weights)

    with pytest.raises(ValueError, match='adapter "odd-lamp" cannot be used: its weights do not'):
        images(endpoint, adapter="odd-lamp")
    # and one whose weights file is not safetensors at all
    (tmp_path / "torn-lamp").mkdir()
    (tmp_path / "torn-lamp" / WEIGHTS_FILE).write_bytes(b"not weights")
    with pytest.raises(ValueError, match=r'"torn-lamp" cannot be used: .* not a readable safet'):
        images(endpoint, adapter="torn-lamp")
    assert endpoint.adapters.loaded == []
    assert "odd-lamp" not in str(endpoint.pipeline.get_list_adapters())
    images(endpoint, adapter="red-mug")
    assert endpoint.adapters.loaded == ["red-mug"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"adapter_scale": 0.5}, '"adapter_scale" needs "adapter"'),
        ({"adapter": "red-mug", "adapter_scale": 2.5}, '"adapter_scale" must be from 0 to 2'),
        ({"adapter": 7}, '"adapter" must be 1 to 63'),
        ({"width": 1032}, '"width" must be from 64 to 1024'),
        ({"lora": "red-mug"}, "unknown field(s) lora"),
    ],
)
def test_bad_fields_are_refused_before_any_adapter_loads(
    endpoint: inference.LoadedModel, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        images(endpoint, **fields)
    assert endpoint.adapters.loaded == []


def test_concurrent_requests_each_get_their_own_adapter(endpoint: inference.LoadedModel) -> None:
    expected = {name: images(endpoint, adapter=name) for name in ("red-mug", "blue-vase")}
    results: dict[str, list[list[str]]] = {"red-mug": [], "blue-vase": []}

    def worker(name: str) -> None:
        for _ in range(3):
            results[name].append(images(endpoint, adapter=name))

    threads = [threading.Thread(target=worker, args=(name,)) for name in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {name: [expected[name]] * 3 for name in expected}


def test_an_adapter_from_s3_in_a_training_archive_draws_what_the_folder_copy_draws(
    archive: Path, adapters: Path, endpoint: inference.LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given red-mug as a run's model.tar.gz in S3 and blue-vase as loose files
    from_folder = {name: images(endpoint, adapter=name) for name in ("red-mug", "blue-vase")}
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as tar:
        for path in (adapters / "red-mug").iterdir():
            tar.add(path, arcname=path.name)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="adapters-bucket")
        s3.put_object(
            Bucket="adapters-bucket", Key="sdxl/red-mug/model.tar.gz", Body=packed.getvalue()
        )
        for path in (adapters / "blue-vase").iterdir():
            s3.put_object(
                Bucket="adapters-bucket", Key=f"sdxl/blue-vase/{path.name}", Body=path.read_bytes()
            )
        monkeypatch.setenv("LORA_ADAPTERS_S3_URI", "s3://adapters-bucket/sdxl/")
        model = inference.model_fn(str(archive))

        # When the endpoint is asked for them, then it draws the same images
        assert {name: images(model, adapter=name) for name in from_folder} == from_folder
        with pytest.raises(ValueError, match=r'unknown adapter "green-lamp".*s3://adapters-bucket'):
            images(model, adapter="green-lamp")


def test_an_adapter_exported_by_the_trainer_with_text_encoder_lora_switches_cleanly(
    archive: Path, adapters: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the trainer's own archive (sdxl_lora.export) of an adapter on the UNet and both text
    # encoders, beside red-mug (UNet only)
    from PIL import Image
    from sdxl_lora.export import export_adapter

    pipeline = StableDiffusionXLPipeline.from_pretrained(archive)
    pipeline.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=ATTENTION))
    encoders = (pipeline.text_encoder, pipeline.text_encoder_2)
    for encoder in encoders:
        encoder.add_adapter(
            LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "k_proj", "v_proj", "out_proj"])
        )
    generator = torch.Generator().manual_seed(21)
    with torch.no_grad():
        for module in (pipeline.unet, *encoders):
            for name, parameter in module.named_parameters():
                if "lora_" in name:
                    parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    store = tmp_path / "adapters"
    shutil.copytree(adapters / "red-mug", store / "red-mug")
    export_adapter(
        store / "worded-mug",
        unet=pipeline.unet,
        text_encoders=encoders,
        metadata={"instance_prompt": "a photo of zwx mug"},
        grid=Image.new("RGB", (8, 8)),
        summary={"steps": 0},
        manifest_source={"kind": "folder"},
    )
    monkeypatch.setenv("LORA_ADAPTERS_DIR", str(store))
    model = inference.model_fn(str(archive))

    # When requests switch between them and the base
    base, red = images(model), images(model, adapter="red-mug")
    worded = images(model, adapter="worded-mug")
    assert set(model.pipeline.get_list_adapters()) == {"unet", "text_encoder", "text_encoder_2"}

    # Then the text encoders' LoRA reaches only the adapter that has it
    assert len({base[0], red[0], worded[0]}) == 3
    assert images(model, adapter="red-mug") == red
    assert images(model) == base
    assert images(model, adapter="worded-mug") == worded


@pytest.mark.parametrize(
    ("variable", "value"),
    [("LORA_CACHE_MAX_MB", "0"), ("LORA_CACHE_MAX_MB", "lots"), ("LORA_CACHE_MAX_ADAPTERS", "-1")],
)
def test_a_bad_cache_setting_stops_the_endpoint_naming_it(
    archive: Path, variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    message = f"{variable} must be an integer from 1 to .*; got '{value}'"
    with pytest.raises(ValueError, match=message):
        inference.model_fn(str(archive))
