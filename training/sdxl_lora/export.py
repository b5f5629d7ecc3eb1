"""The archive of an SDXL LoRA run (`SM_MODEL_DIR`, tarred by SageMaker): the adapter, never
the base. Megabytes, so one endpoint can keep many products' adapters beside one base.

- `adapter_model.safetensors`: the LoRA weights in diffusers' format, as
  `StableDiffusionXLPipeline.save_lora_weights` writes them (UNet keys `unet.…`, with
  `train_text_encoder` also `text_encoder.…`/`text_encoder_2.…`), with each LoRA's config in
  the file's metadata; `pipeline.load_lora_weights(folder, weight_name=ADAPTER_WEIGHTS)` loads it.
- `adapter.json`: what the adapter is for: base model id, revision and manifest hash, rank and
  alpha, the instance prompt and its trigger words, steps and resolution, the sample prompts.
- `samples.png`: a grid of images made at the end from fixed prompts and seeds.
- `training_summary.json`: the run's summary (as `dreambooth/train.py` writes it).
- `atelier-manifest.json`, last: every other file with its size and SHA-256, and the job and
  base it came from (common/manifest.py).
"""

# diffusers and peft leave most of their API unannotated.
# mypy: disallow-untyped-calls=False

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import (
    StableDiffusionXLPipeline,
)
from diffusers.utils.state_dict_utils import convert_state_dict_to_diffusers
from peft.utils import get_peft_model_state_dict
from PIL import Image

from common.base_model_channel import write_archive_manifest
from dreambooth.export import write_summary

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_METADATA = "adapter.json"
SAMPLE_GRID = "samples.png"
ADAPTER_FORMAT = "diffusers-sdxl-lora"


def lora_layers(module: torch.nn.Module) -> dict[str, torch.nn.Module | torch.Tensor]:
    """The module's LoRA weights under diffusers' key names."""
    state: dict[str, torch.nn.Module | torch.Tensor] = convert_state_dict_to_diffusers(
        get_peft_model_state_dict(module)
    )
    return state


def lora_metadata(module: torch.nn.Module) -> dict[str, Any]:
    """The module's LoRA config, stored in the weights file so a loader uses its alpha."""
    peft_config: Any = module.peft_config
    config: dict[str, Any] = peft_config["default"].to_dict()
    return config


def export_adapter(
    model_dir: Path,
    *,
    unet: torch.nn.Module,
    text_encoders: tuple[torch.nn.Module, torch.nn.Module] | None,
    metadata: Mapping[str, Any],
    grid: Image.Image,
    summary: Mapping[str, Any],
    manifest_source: Mapping[str, Any],
) -> Path:
    """Write the archive into `model_dir` (see the module's docstring) and return it."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    text_layers: dict[str, Any] = {}
    if text_encoders is not None:
        first, second = text_encoders
        text_layers = {
            "text_encoder_lora_layers": lora_layers(first),
            "text_encoder_2_lora_layers": lora_layers(second),
            "text_encoder_lora_adapter_metadata": lora_metadata(first),
            "text_encoder_2_lora_adapter_metadata": lora_metadata(second),
        }
    StableDiffusionXLPipeline.save_lora_weights(
        model_dir,
        unet_lora_layers=lora_layers(unet),
        unet_lora_adapter_metadata=lora_metadata(unet),
        weight_name=ADAPTER_WEIGHTS,
        safe_serialization=True,
        **text_layers,
    )
    (model_dir / ADAPTER_METADATA).write_text(
        json.dumps(dict(metadata), indent=2, default=str) + "\n", encoding="utf-8"
    )
    grid.save(model_dir / SAMPLE_GRID)
    write_summary(model_dir, summary)
    # Last, so that it lists every file above.
    write_archive_manifest(model_dir, manifest_source)
    return model_dir
