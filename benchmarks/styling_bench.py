"""Benchmarks of the styling endpoint's handler (`make bench`), on CPU, all in one run.

1. Where a request's time goes: CLIPSeg's mask (`styling.inference.mask_from_prompt`) versus the
   inpainting (`styling.inference.inpaint`), 512 px, guidance 6.5, one image.
2. Batching: images per second at `num_images_per_prompt` 4 versus 1 (one request each).

The models are the real architectures (`stabilityai/stable-diffusion-2-inpainting`'s UNet, VAE
and OpenCLIP text encoder, `CIDAS/clipseg-rd64-refined`) with every width divided by
`WIDTH_DIVISOR` and everything else kept: depths, head counts, the PNDM scheduler, 512 px images
and 64x64 latents, CLIPSeg's 352 px input in 16 px patches. Randomly initialised, built from
config: nothing is downloaded.

A request's inpainting time is linear in its steps (one UNet call per step; the VAE, the text
encoder and PNDM's extra first call once): it is measured at 2 and 4 steps, printed at 4, and
split into a fixed and a per-step cost that give the 25 steps of the reference styling request.
A narrower model shrinks convolutions and projections more than attention over the 4096 latent
positions, so the shares are those of this scaled model, an estimate for the real one; ratios
taken in one run on one machine travel between machines better than absolute times. A CPU is
already busy with one image (the UNet at batch 8 takes ~4x its time at batch 2 here), so the
batching gain measured here is a floor; a GPU, which one 512 px image does not fill, should
gain more.
"""

from __future__ import annotations

import base64
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "training")]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from diffusers import (  # noqa: E402
    AutoencoderKL,
    PNDMScheduler,
    StableDiffusionInpaintPipeline,
    UNet2DConditionModel,
)
from PIL import Image  # noqa: E402
from transformers import (  # noqa: E402
    CLIPSegConfig,
    CLIPSegForImageSegmentation,
    CLIPSegProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    ViTImageProcessor,
)

from styling.inference import (  # noqa: E402
    inpaint,
    mask_from_prompt,
    model_fn,
    parse_request,
)
from tests.sd_model_support import build_clip_tokenizer  # noqa: E402

WIDTH_DIVISOR = 16
# PNDM (the real model's scheduler) makes s + 1 UNet calls for s >= 2 steps but 1 for 1 step:
# measure where the time is linear in the steps.
MEASURED_STEPS = (2, 4)
REFERENCE_STEPS = 25
GUIDANCE = 6.5
IMAGE_LENGTH = 512
REPEATS = 3
BATCH = 4
PHOTO_SIZE = (768, 1024)


def narrow(channels: int) -> int:
    return channels // WIDTH_DIVISOR


def inpainting_pipeline(tokenizer: CLIPTokenizer) -> StableDiffusionInpaintPipeline:
    """stable-diffusion-2-inpainting's components, every width divided by WIDTH_DIVISOR."""
    text_hidden = narrow(1024)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=text_hidden,
            intermediate_size=narrow(4096),
            num_hidden_layers=23,
            num_attention_heads=16,
            max_position_embeddings=77,
            projection_dim=narrow(512),
            hidden_act="gelu",
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=0,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=9,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=tuple(narrow(c) for c in (320, 640, 1280, 1280)),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        attention_head_dim=(5, 10, 20, 20),
        cross_attention_dim=text_hidden,
        norm_num_groups=narrow(320) // 5,
        use_linear_projection=True,
    )
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=tuple(narrow(c) for c in (128, 256, 512, 512)),
        layers_per_block=2,
        latent_channels=4,
        norm_num_groups=narrow(128) // 2,
        sample_size=IMAGE_LENGTH,
    )
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        steps_offset=1,
        set_alpha_to_one=False,
    )
    return StableDiffusionInpaintPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def clipseg(tokenizer: CLIPTokenizer) -> tuple[CLIPSegForImageSegmentation, CLIPSegProcessor]:
    """clipseg-rd64-refined (ViT-B/16 at 352 px), every width divided by WIDTH_DIVISOR."""
    config = CLIPSegConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": narrow(512),
            "intermediate_size": narrow(2048),
            "num_hidden_layers": 12,
            "num_attention_heads": 8,
            "max_position_embeddings": 77,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": 0,
        },
        vision_config={
            "hidden_size": narrow(768),
            "intermediate_size": narrow(3072),
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "image_size": 224,
            "patch_size": 16,
        },
        projection_dim=narrow(512),
        reduce_dim=narrow(64),
        extract_layers=(3, 6, 9),
        decoder_num_attention_heads=4,
        decoder_intermediate_size=narrow(2048),
        conditional_layer=0,
        use_complex_transposed_convolution=True,
    )
    processor = CLIPSegProcessor(
        image_processor=ViTImageProcessor(
            size={"height": 352, "width": 352},
            image_mean=[0.485, 0.456, 0.406],
            image_std=[0.229, 0.224, 0.225],
        ),
        tokenizer=tokenizer,
    )
    return CLIPSegForImageSegmentation(config), processor


def build_archive(root: Path) -> Path:
    """The inpainting archive layout: pipeline at the root, CLIPSeg in clipseg/."""
    torch.manual_seed(0)
    tokenizer = CLIPTokenizer.from_pretrained(build_clip_tokenizer(root / "tokenizer-source"))
    inpainting_pipeline(tokenizer).save_pretrained(root / "archive")
    model, processor = clipseg(tokenizer)
    model.save_pretrained(root / "archive" / "clipseg")
    processor.save_pretrained(root / "archive" / "clipseg")
    return root / "archive"


def photo() -> str:
    x = np.linspace(0, 255, PHOTO_SIZE[0])[None, :]
    y = np.linspace(0, 255, PHOTO_SIZE[1])[:, None]
    rgb = np.stack(np.broadcast_arrays(x, y, (x + y) / 2), axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def timed(call: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def parameter_counts(loaded: Any) -> str:
    modules = {
        "unet": loaded.pipeline.unet,
        "vae": loaded.pipeline.vae,
        "text encoder": loaded.pipeline.text_encoder,
        "clipseg": loaded.segmenter,
    }
    return ", ".join(
        f"{name} {sum(p.numel() for p in module.parameters()) / 1e6:.1f} M"
        for name, module in modules.items()
    )


def main() -> int:
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    with tempfile.TemporaryDirectory() as scratch:
        loaded = model_fn(str(build_archive(Path(scratch))))
    document = {
        "image": photo(),
        "mask_prompt": "the shirt",
        "prompt": "a red flannel shirt",
        "guidance_scale": GUIDANCE,
        "image_length": IMAGE_LENGTH,
        "mask_threshold": 0.0,
        "seed": 0,
    }
    requests = {
        (images, steps): parse_request(
            {**document, "num_images_per_prompt": images, "num_inference_steps": steps}, loaded
        )
        for images in (1, BATCH)
        for steps in MEASURED_STEPS
    }
    image = requests[1, MEASURED_STEPS[0]].image
    mask = mask_from_prompt(loaded, image, "the shirt", 0.0)
    inpaint(loaded, requests[1, MEASURED_STEPS[0]], mask)  # warm-up: first-call allocations

    # Interleaved, so a slow moment on a shared machine does not land on one variant only.
    timings: dict[Any, list[float]] = {"mask": [], **{key: [] for key in requests}}
    for _ in range(REPEATS):
        elapsed, mask = timed(lambda: mask_from_prompt(loaded, image, "the shirt", 0.0))
        timings["mask"].append(elapsed)
        for key, request in requests.items():
            elapsed, results = timed(
                lambda request=request, mask=mask: inpaint(loaded, request, mask)
            )
            assert len(results) == key[0]
            timings[key].append(elapsed)
    median = {key: statistics.median(values) for key, values in timings.items()}

    low, high = MEASURED_STEPS

    def seconds(images: int, steps: int) -> float:
        """Inpainting time of a request: its fixed cost plus its steps at the per-step cost."""
        per_step = (median[images, high] - median[images, low]) / (high - low)
        return median[images, low] + (steps - low) * per_step

    print(
        f"styling, real architectures at 1/{WIDTH_DIVISOR} width ({parameter_counts(loaded)}), "
        f"CPU, {torch.get_num_threads()} threads, median of {REPEATS}, "
        f"{PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} photo, {IMAGE_LENGTH} px, guidance {GUIDANCE}:"
    )
    print(
        f"  mask {median['mask'] * 1000:.0f} ms; inpainting one image "
        f"{seconds(1, 0) * 1000:.0f} ms fixed + {(seconds(1, 1) - seconds(1, 0)) * 1000:.0f} ms "
        "per step"
    )
    for steps in (high, REFERENCE_STEPS):
        how = "measured" if steps == high else "from the per-step cost"
        share = median["mask"] / (median["mask"] + seconds(1, steps))
        single, batched = 1 / seconds(1, steps), BATCH / seconds(BATCH, steps)
        print(
            f"  {steps} steps ({how}): mask share of a request {share * 100:.1f}%; images/s "
            f"{BATCH} per request {batched:.3f} vs 1 per request {single:.3f}: batching gain "
            f"{batched / single:.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
