"""DreamBooth-LoRA fine-tuning of Stable Diffusion XL for one product (SageMaker entry point).

SageMaker runs `python sdxl_lora/train.py --max_steps 500 ...` with the hyperparameters as
arguments and the dataset in the `training` channel, in DreamBooth's layout and checked by the
same code (dreambooth/layout.py: instance images and `dataset_info.json` at the top, optional
`class_data_dir/`); locally, `cd training && python -m sdxl_lora.train --dataset_dir ...` runs
the same code.

A LoRA (rank `rank`) on the UNet's attention projections is trained, and with
`train_text_encoder` one on each of SDXL's two text encoders; every base weight stays frozen.
Prior preservation is optional, with DreamBooth's class-image generation (dreambooth/
class_images.py) run on the SDXL pipeline. SDXL's conditioning is done as in its own training:
both encoders' penultimate hidden states as the context, the second encoder's pooled embedding
and each picture's `add_time_ids` (original size, crop offset, target size) as extra inputs.

The base is the `model` channel, a staged folder checked against its manifest
(`base_model_manifest_sha256`); a job never downloads (common/base_model_channel.py).

Output in `SM_MODEL_DIR` (sdxl_lora/export.py): the adapter only (`adapter_model.safetensors`,
`adapter.json`), `samples.png` (fixed prompts and seeds), `training_summary.json` and, last,
`atelier-manifest.json`. Checkpoints (the LoRA weights, optimizer, schedule, progress, RNG) go
to `/opt/ml/checkpoints`; a restarted spot job resumes from the newest readable one exactly. A
non-finite loss or gradient stops training before the bad update and the last good adapter is
exported, the summary saying so. Metric lines are DreamBooth's (dreambooth/metrics.py).
"""

# diffusers leaves most of its API unannotated.
# mypy: disallow-untyped-calls=False

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # SageMaker runs this file as a script from /opt/ml/code: make the packages importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import torch
from diffusers.utils.pil_utils import make_image_grid
from PIL import Image

from common.base_model_channel import ModelInput, training_job_source
from dreambooth.checkpoints import Progress
from dreambooth.class_images import generate_class_images
from dreambooth.components import resolve_mixed_precision
from dreambooth.data import Examples
from dreambooth.export import write_summary
from dreambooth.steps import Losses, Plan, step_generator

# DreamBooth's loop, shared rather than copied, with the dataset reading and seeding.
from dreambooth.train import (
    Outcome,
    build_summary,
    class_images_wanted,
    read_dataset,
    run_loop,
    run_training,
    seed_everything,
    timed,
    training_plan,
)
from sagemaker_job import TrainingError, configure_logging
from sdxl_lora.arguments import parse_args, resolve_base_model
from sdxl_lora.checkpoints import restore_checkpoint, save_checkpoint
from sdxl_lora.components import SdxlComponents, build_pipeline, load_components, tokenize_pair
from sdxl_lora.data import PromptIds, make_batch
from sdxl_lora.export import (
    ADAPTER_FORMAT,
    ADAPTER_WEIGHTS,
    SAMPLE_GRID,
    export_adapter,
)
from sdxl_lora.sampling import Float32Decoding
from sdxl_lora.steps import (
    TEXT_ENCODER_LORA_TARGETS,
    UNET_LORA_TARGETS,
    LoraTrainer,
    SdxlModels,
    make_trainer,
    training_step_loss,
)

__all__ = [
    "SAMPLE_PROMPTS",
    "TrainingError",
    "export_adapter",
    "main",
    "parse_args",
    "run",
    "run_with_args",
    "training_step_loss",
]

LOG = logging.getLogger("sdxl_lora.train")

# The sample grid's prompts ({prompt}: the instance prompt), each drawn with seed
# sample_seed + its index: the same pictures for every product, so runs compare side by side.
SAMPLE_PROMPTS = (
    "{prompt}",
    "{prompt}, studio product photo on a plain white background",
    "{prompt} on a wooden table in a sunlit room",
    "{prompt} outdoors, close-up, natural light",
)
GPU_MEMORY_HINT = (
    "keep gradient_checkpointing on, lower batch_size (raise gradient_accumulation_steps "
    "instead), rank or resolution, turn train_text_encoder off, or use a larger GPU"
)


# --------------------------------------------------------------------------------------------
# Training


def train(
    trainer: LoraTrainer,
    models: SdxlModels,
    examples: Examples,
    batch_args: Mapping[str, Any],
    plan: Plan,
    args: argparse.Namespace,
) -> Outcome:
    """DreamBooth's loop (dreambooth/train.py `run_loop`) on SDXL batches: the same
    accumulation, NaN guard, fp16 overflow allowance, metric lines and checkpoint cadence."""

    def step_loss(epoch: int, index: int, indices: Sequence[int]) -> Losses:
        batch = make_batch(examples, indices, epoch=epoch, **batch_args)
        return training_step_loss(models, batch, step_generator(args.seed, epoch, index))

    return run_loop(
        trainer,
        restore_checkpoint(trainer, args) or Progress(),
        trained_modules=list(trainer.trained_modules().values()),
        step_loss=step_loss,
        save=lambda progress: save_checkpoint(trainer, progress, args),
        examples=len(examples),
        plan=plan,
        args=args,
        log=LOG,
    )


# --------------------------------------------------------------------------------------------
# Setup and the end of the run


def prepare_class_images(
    args: argparse.Namespace,
    components: SdxlComponents,
    class_prompt: str,
    dataset_class_images: Sequence[Path],
    autocast: Callable[[], contextlib.AbstractContextManager[Any]],
    base: ModelInput,
) -> tuple[list[Path], int]:
    """The class images to train on, generating the missing ones with the base (before any
    LoRA is attached); and how many were generated."""
    generated_dir, images, missing = class_images_wanted(args, dataset_class_images, LOG)
    if missing:
        pipeline = build_pipeline(components, base.location, base.revision)
        # The pipeline call generate_class_images makes is the same for SDXL; the autocast
        # goes around the UNet only (sdxl_lora/sampling.py).
        generate_class_images(
            cast(Any, Float32Decoding(pipeline, autocast)),
            prompt=class_prompt,
            indices=missing,
            directory=generated_dir,
            resolution=args.resolution,
            inference_steps=args.class_image_inference_steps,
            batch_size=args.class_image_batch_size,
            seed=args.seed,
        )
    return images, len(missing)


def sample_prompts(instance_prompt: str) -> list[str]:
    return [template.format(prompt=instance_prompt) for template in SAMPLE_PROMPTS]


def sample_grid(
    pipeline: Any,
    prompts: Sequence[str],
    seeds: Sequence[int],
    args: argparse.Namespace,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]],
) -> Image.Image:
    """One image per (prompt, seed), in a grid of two columns."""
    draw = Float32Decoding(pipeline, autocast)
    draw.set_progress_bar_config(disable=True)
    images = []
    for prompt, seed in zip(prompts, seeds, strict=True):
        images.append(
            draw(
                prompt=prompt,
                height=args.resolution,
                width=args.resolution,
                num_inference_steps=args.sample_steps,
                guidance_scale=args.sample_guidance_scale,
                generator=torch.Generator("cpu").manual_seed(seed),
            ).images[0]
        )
    grid: Image.Image = make_image_grid(images, rows=(len(images) + 1) // 2, cols=2)
    return grid


def trigger_words(instance_prompt: str, class_prompt: str | None) -> list[str]:
    """The words of the instance prompt the class prompt lacks ("sks" in "a photo of sks bag"
    against "a photo of a bag"): what a request must say to call up the product."""
    if class_prompt is None:
        return []
    known = set(class_prompt.lower().split())
    return [word for word in instance_prompt.split() if word.lower() not in known]


# --------------------------------------------------------------------------------------------
# Entry points


def main(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    seed_everything(args.seed)
    if args.start_from:
        raise TrainingError(
            f"start_from={args.start_from}: an SDXL LoRA is trained on the base model, not on "
            "an earlier adapter; leave start_from unset"
        )
    mixed_precision = resolve_mixed_precision(args.mixed_precision)
    instances, instance_prompt, class_prompt, dataset_class_images = read_dataset(args)
    if args.use_8bit_adam and not torch.cuda.is_available():
        raise TrainingError("use_8bit_adam needs a CUDA GPU (bitsandbytes); set it false on CPU")
    base = resolve_base_model(args)
    LOG.info(
        "SDXL LoRA (rank %d) of %s at %s on %d instance images (%r), mixed precision %s",
        args.rank,
        base.location,
        base.revision or "the folder's files",
        len(instances),
        instance_prompt,
        mixed_precision,
    )
    components = load_components(base.location, base.revision)
    plan = training_plan(args, len(instances))
    trainer, models = make_trainer(components, args, plan, mixed_precision)
    class_images: list[Path] = []
    generated = 0
    if args.with_prior_preservation:
        if class_prompt is None:  # read_dataset_info demands it; this keeps the types honest
            raise TrainingError("prior preservation needs class_prompt in dataset_info.json")
        # With the LoRA still the identity (B = 0), this is the base model drawing the class.
        with timed(LOG, "class image generation"):
            class_images, generated = prepare_class_images(
                args,
                components,
                class_prompt,
                dataset_class_images,
                trainer.accelerator.autocast,
                base,
            )
    examples = Examples(instance_images=instances, class_images=class_images)
    class_ids: PromptIds | None = None
    if args.with_prior_preservation and class_prompt:
        class_ids = tokenize_pair(components, class_prompt)
    batch_args = {
        "seed": args.seed,
        "resolution": args.resolution,
        "center_crop": args.center_crop,
        "instance_ids": tokenize_pair(components, instance_prompt),
        "class_ids": class_ids,
    }
    LOG.info(
        "%d examples per epoch, %d optimizer steps per epoch, %d steps in all",
        len(examples),
        plan.steps_per_epoch,
        plan.total_steps,
    )
    with timed(LOG, "training"):
        outcome = train(trainer, models, examples, batch_args, plan, args)
    if outcome.stopped_reason and outcome.progress.optimizer_steps == 0:
        raise TrainingError(f"{outcome.stopped_reason}; nothing was learned, no adapter saved")
    for module in trainer.trained_modules().values():
        module.eval()
    prompts = sample_prompts(instance_prompt)
    seeds = [args.sample_seed + index for index in range(len(prompts))]
    with timed(LOG, "sample grid"):
        grid = sample_grid(
            build_pipeline(components, base.location, base.revision),
            prompts,
            seeds,
            args,
            trainer.accelerator.autocast,
        )
    summary = build_summary(
        args,
        outcome,
        plan,
        kind={"trainer": "sdxl-lora"},
        base=base,
        mixed_precision=mixed_precision,
        instances=len(instances),
        class_images={"used": len(class_images), "generated": generated},
        seconds=time.monotonic() - started,
    )
    metadata = {
        "format": ADAPTER_FORMAT,
        "weights": ADAPTER_WEIGHTS,
        "base_model": args.base_model,
        "base_model_revision": args.base_model_revision,
        "base_source": dict(base.source),
        "rank": args.rank,
        "lora_alpha": args.lora_alpha,
        "unet_target_modules": list(UNET_LORA_TARGETS),
        "text_encoder_target_modules": (
            list(TEXT_ENCODER_LORA_TARGETS) if args.train_text_encoder else []
        ),
        "instance_prompt": instance_prompt,
        "class_prompt": class_prompt,
        "trigger_words": trigger_words(instance_prompt, class_prompt),
        "optimizer_steps": outcome.progress.optimizer_steps,
        "resolution": args.resolution,
        "stopped_non_finite": outcome.stopped_reason is not None,
        "sample_grid": SAMPLE_GRID,
        "sample_prompts": prompts,
        "sample_seeds": seeds,
        "sample_steps": args.sample_steps,
        "sample_guidance_scale": args.sample_guidance_scale,
    }
    unet = trainer.accelerator.unwrap_model(trainer.unet)
    text_encoders = None
    if args.train_text_encoder:
        text_encoders = (
            trainer.accelerator.unwrap_model(trainer.text_encoder),
            trainer.accelerator.unwrap_model(trainer.text_encoder_2),
        )
    with timed(LOG, "export"):
        export_adapter(
            args.model_dir,
            unet=unet,
            text_encoders=text_encoders,
            metadata=metadata,
            grid=grid,
            summary=summary,
            manifest_source=training_job_source(base.source),
        )
    write_summary(args.output_data_dir, summary)
    return summary


def run(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    return run_with_args(parse_args(argv))


def run_with_args(args: argparse.Namespace) -> int:
    """Train; 0 when an adapter was saved, 1 (and SageMaker's failure file) when none could be."""
    return run_training(main, args, LOG, gpu_memory_hint=GPU_MEMORY_HINT)


if __name__ == "__main__":
    sys.exit(run())
