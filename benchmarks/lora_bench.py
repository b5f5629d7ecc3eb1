"""Benchmark of the SDXL many-adapter endpoint (`make bench`), on CPU, all in one run.

Three costs, each the median of `REPEATS` interleaved rounds:
(a) a full load: the handler's `model_fn` (the SDXL pipeline from disk, what a new endpoint or a
    new endpoint per product pays before its first image);
(b) a switch: making an already loaded adapter the active one (`enable_lora` + `set_adapters`);
(c) a first use: an adapter not loaded yet, read from a local folder store, sized, loaded onto
    the pipeline (`load_lora_weights`) and activated.
Reported as ratios b/a and c/a (goals: switch at most 0.05x, first use at most 0.2x of a full
load). No image is generated: generation costs the same with or without the adapter machinery.

Two models, both randomly initialised and built from config (nothing downloaded):
- the tiny test SDXL (`tests/sdxl_model_support.py`), with a rank-4 adapter on its attention;
- a scaled SDXL: SDXL 1.0's UNet layout (three levels, 2/10 transformer layers, 2048-wide
  cross-attention, the text-time conditioning) with every width divided by `WIDTH_DIVISOR`, and
  the rank-8 attention adapter (to_q/k/v/out) that `train_dreambooth_lora_sdxl.py` trains by
  default on it. Its load/adapter size ratio is closer to the real model's (SDXL's UNet has 2.6 B
  parameters, a rank-8 adapter about 0.2 % of them) than the tiny model's, where fixed overheads
  dominate both sides.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "training")]

import torch  # noqa: E402
from diffusers import (  # noqa: E402
    AutoencoderKL,
    EulerDiscreteScheduler,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from diffusers.utils import convert_state_dict_to_diffusers  # noqa: E402
from lora_serving import inference  # noqa: E402
from lora_serving.adapter_store import METADATA_FILE, WEIGHTS_FILE  # noqa: E402
from peft import LoraConfig  # noqa: E402
from peft.utils import get_peft_model_state_dict  # noqa: E402
from transformers import (  # noqa: E402
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
)

from tests.sd_model_support import MAX_TEXT_LENGTH, build_clip_tokenizer  # noqa: E402
from tests.sdxl_model_support import build_tiny_sdxl  # noqa: E402

REPEATS = 7
CACHED_ADAPTERS = 4
WIDTH_DIVISOR = 8
SWITCH_GOAL = 0.05
FIRST_USE_GOAL = 0.2
ATTENTION = ["to_q", "to_k", "to_v", "to_out.0"]


def build_scaled_sdxl(directory: Path) -> Path:
    """SDXL 1.0's layout with every width divided by WIDTH_DIVISOR (see the module docstring)."""
    torch.manual_seed(0)
    d = WIDTH_DIVISOR
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = CLIPTokenizer.from_pretrained(build_clip_tokenizer(Path(scratch)))
    vocab = len(tokenizer.get_vocab())

    def text_config(hidden: int, layers: int, heads: int, projection: int) -> CLIPTextConfig:
        return CLIPTextConfig(
            vocab_size=vocab, hidden_size=hidden, intermediate_size=4 * hidden,
            num_hidden_layers=layers, num_attention_heads=heads, projection_dim=projection,
            max_position_embeddings=MAX_TEXT_LENGTH, hidden_act="gelu",
            bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=0,
        )  # fmt: skip

    # CLIP ViT-L (768 wide, 12 layers) and OpenCLIP bigG (1280 wide, 32 layers, 1280 projection).
    text_encoder = CLIPTextModel(text_config(768 // d, 12, 12 // 4, 768 // d))
    text_encoder_2 = CLIPTextModelWithProjection(text_config(1280 // d, 32, 20 // 4, 1280 // d))
    unet = UNet2DConditionModel(
        sample_size=128,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(320 // d, 640 // d, 1280 // d),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 10),
        attention_head_dim=(5, 10, 20),
        cross_attention_dim=2048 // d,
        norm_num_groups=32 // 4,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=256 // d,
        projection_class_embeddings_input_dim=1280 // d + 6 * (256 // d),
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128 // d, 256 // d, 512 // d, 512 // d), norm_num_groups=32 // 4,
        sample_size=1024, scaling_factor=0.13025,
    )  # fmt: skip
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
        timestep_spacing="leading",
    )  # fmt: skip
    StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=tokenizer, unet=unet, scheduler=scheduler, add_watermarker=False,
    ).save_pretrained(directory)  # fmt: skip
    return directory


def save_adapter(base: Path, folder: Path, *, rank: int) -> int:
    """A rank-`rank` attention adapter of `base`'s UNet (non-zero weights) in `folder`; its
    parameter count."""
    pipeline = StableDiffusionXLPipeline.from_pretrained(base)
    pipeline.unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=ATTENTION))
    with torch.no_grad():
        for name, parameter in pipeline.unet.named_parameters():
            if "lora_" in name:
                parameter.normal_(0, 0.1)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipeline.unet))
    folder.mkdir(parents=True)
    StableDiffusionXLPipeline.save_lora_weights(
        folder, unet_lora_layers=layers, weight_name=WEIGHTS_FILE, safe_serialization=True
    )
    (folder / METADATA_FILE).write_text(json.dumps({"rank": rank}))
    return sum(int(tensor.numel()) for tensor in layers.values())


def timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def activate(model: inference.LoadedModel, name: str) -> None:
    with model.adapters.activated(name):
        pass


def measure(label: str, base: Path, rank: int, scratch: Path) -> dict[str, float]:
    adapters = scratch / f"{label}-adapters"
    parameters = save_adapter(base, adapters / "switch-a", rank=rank)
    shutil.copytree(adapters / "switch-a", adapters / "switch-b")
    # One fresh name per first use (a copy of the same weights), so each is a real first load.
    for index in range(REPEATS + 1):
        shutil.copytree(adapters / "switch-a", adapters / f"new-{index}")
    os.environ["LORA_ADAPTERS_DIR"] = str(adapters)
    # A busy endpoint's steady state: the cache is full, so each first use also evicts one.
    os.environ["LORA_CACHE_MAX_ADAPTERS"] = str(CACHED_ADAPTERS)
    model = inference.model_fn(str(base))  # warm-up: imports and first-call allocations
    for name in ("switch-a", "new-0", "switch-b"):
        activate(model, name)

    timings: dict[str, list[float]] = {"load": [], "switch": [], "first use": [], "hotswap": []}
    for round_ in range(REPEATS):
        switch_to = "switch-a" if round_ % 2 == 0 else "switch-b"
        timings["load"].append(timed(lambda: inference.model_fn(str(base))))
        timings["switch"].append(timed(partial(activate, model, switch_to)))
        timings["first use"].append(timed(partial(activate, model, f"new-{round_ + 1}")))
    # For comparison, not used by the handler: diffusers' hotswap, new weights copied into an
    # adapter already on the pipeline (same rank and layers) instead of new layers injected.
    for round_ in range(REPEATS):
        hotswap = partial(
            model.pipeline.load_lora_weights,
            str(adapters / f"new-{round_}"),
            weight_name=WEIGHTS_FILE,
            adapter_name=model.adapters.loaded[-1],
            hotswap=True,
        )
        timings["hotswap"].append(timed(hotswap))
    medians = {key: statistics.median(values) for key, values in timings.items()}
    load = medians["load"]
    unet = sum(p.numel() for n, p in model.pipeline.unet.named_parameters() if ".lora_" not in n)
    print(
        f"{label}: UNet {unet:,} parameters, rank-{rank} adapter {parameters:,}; "
        f"{CACHED_ADAPTERS} adapters cached; median of {REPEATS} (ms)\n"
        f"  (a) full load          {load * 1e3:9.1f}\n"
        f"  (b) switch             {medians['switch'] * 1e3:9.1f}  {medians['switch'] / load:6.3f}x"
        f"  goal <= {SWITCH_GOAL}x\n"
        f"  (c) first use          {medians['first use'] * 1e3:9.1f}  "
        f"{medians['first use'] / load:6.3f}x  goal <= {FIRST_USE_GOAL}x\n"
        f"      hotswap (not used) {medians['hotswap'] * 1e3:9.1f}  "
        f"{medians['hotswap'] / load:6.3f}x"
    )
    return medians


def main() -> int:
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    import logging

    logging.getLogger("diffusers").setLevel(logging.ERROR)
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        results = {
            "tiny SDXL": measure("tiny SDXL", build_tiny_sdxl(scratch / "tiny"), 4, scratch),
            f"SDXL / {WIDTH_DIVISOR}": measure(
                f"SDXL / {WIDTH_DIVISOR}", build_scaled_sdxl(scratch / "scaled"), 8, scratch
            ),
        }
    for label, medians in results.items():
        switch = medians["switch"] / medians["load"]
        first = medians["first use"] / medians["load"]
        print(
            f"{label}: switch {'met' if switch <= SWITCH_GOAL else 'NOT met'}, first use "
            f"{'met' if first <= FIRST_USE_GOAL else 'NOT met'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
