"""DreamBooth fine-tuning of Stable Diffusion, text-to-image or inpainting (SageMaker entry point).

SageMaker runs `python dreambooth/train.py --max_steps 400 ...` with the JumpStart-style
hyperparameters as arguments and the dataset in the `training` channel (instance images and
`dataset_info.json` at the top, optional `class_data_dir/`); locally,
`cd training && python -m dreambooth.train --dataset_dir ...` runs the same code. The whole UNet
(and with `train_text_encoder` the text encoder) is trained; the VAE stays frozen.

`mode=inpainting` fine-tunes an inpainting model (9-channel UNet) for virtual styling: every
example gets a random mask (rectangles, brush strokes, sometimes the whole picture), and the
UNet sees the noisy latents, the mask and the latents of the masked picture, as at inference.

Prior preservation trains on the class images alongside the subject (loss = instance loss +
prior_loss_weight x prior loss) so the class keeps its variety; missing class images are
generated from `class_prompt` with the base model before training.

The base model is the `model` channel: a staged folder checked against its manifest
(`base_model_manifest_sha256`), or with `start_from=<job>` that earlier run's `model.tar.gz`,
extracted and checked, so one subject can be trained on top of another; CLIPSeg (inpainting) is
the `clipseg` channel. A job never downloads (common/base_model_channel.py).

Output in `SM_MODEL_DIR` (`dreambooth.export`): the diffusers pipeline, `clipseg/` for
inpainting, `code/inference.py`, `code/requirements.txt`, `training_summary.json` and, last,
`atelier-manifest.json` naming this job and the base it started from.
Checkpoints (trained weights, optimizer, learning-rate schedule, progress, RNG) go to
`/opt/ml/checkpoints` with the generated class images; a restarted spot job resumes from the
newest readable one. A non-finite loss or gradient stops training before the bad update, the
last good weights are exported and the summary says so.

This module holds the entry points, the setup and the training loop; the rest lives beside it:
`arguments.py` (the command line), `components.py` (loading the base model), `steps.py` (the
plan, optimizer and one step's loss), `checkpoints.py` (saving and resuming), `class_images.py`
(generating prior-preservation images) and `export.py` (the archive).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # SageMaker runs this file as a script from /opt/ml/code: make `dreambooth` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import Accelerator

from common.base_model_channel import ModelInput, training_job_source
from dreambooth.arguments import parse_args, resolve_base_model, resolve_clipseg
from dreambooth.checkpoints import CHECKPOINT_FILE, Progress, restore_checkpoint, save_checkpoint
from dreambooth.class_images import class_image_list, generate_class_images
from dreambooth.components import (
    Components,
    build_pipeline,
    load_components,
    load_frozen_components,
    resolve_mixed_precision,
    tokenize,
)
from dreambooth.data import Examples, epoch_batches, make_batch
from dreambooth.export import (
    INPAINTING,
    ExportError,
    export_archive,
    serving_files,
    write_summary,
)
from dreambooth.layout import (
    DatasetError,
    class_image_paths,
    instance_image_paths,
    read_dataset_info,
)
from dreambooth.metrics import EPOCH_LOSS, INSTANCE_LOSS, LEARNING_RATE, PRIOR_LOSS, STEP_LOSS
from dreambooth.steps import (
    LoopTrainer,
    Losses,
    Models,
    Plan,
    Trainer,
    encode_latents,
    make_trainer,
    plan_steps,
    step_generator,
    training_step_loss,
)
from metric_lines import metric_line
from sagemaker_job import TrainingError, configure_logging, run_job, write_failure

# The script's interface: its entry points and, re-exported from the modules it is built from,
# what the tests drive or replace on this module (monkeypatching `train.training_step_loss`,
# `train.load_components`, `train.read_dataset` or `train.generate_class_images` reaches the
# loop and setup here).
__all__ = [
    "CHECKPOINT_FILE",
    "GENERATED_CLASS_DIR",
    "Losses",
    "Models",
    "Plan",
    "TrainingError",
    "encode_latents",
    "generate_class_images",
    "load_components",
    "main",
    "parse_args",
    "plan_steps",
    "prepare_class_images",
    "read_dataset",
    "resolve_base_model",
    "resolve_mixed_precision",
    "run",
    "run_with_args",
    "tokenize",
    "training_step_loss",
]

LOG = logging.getLogger("dreambooth.train")

# Beside the checkpoints, so SageMaker syncs them too and a restarted job does not regenerate.
GENERATED_CLASS_DIR = "class_images"
# With fp16 the loss scaler skips a step whose gradients overflowed and halves its scale; this
# many in a row means the scale is down by 2**N and the run is diverging, not warming up.
MAX_SKIPPED_STEPS_IN_A_ROW = 25
GPU_MEMORY_HINT = (
    "turn on gradient_checkpointing and use_8bit_adam, lower batch_size or resolution, or use a "
    "24 GB GPU (ml.g5.2xlarge): prior preservation does not fit in 16 GB (ml.g4dn.2xlarge)"
)


# --------------------------------------------------------------------------------------------
# Training


@dataclass
class Outcome:
    progress: Progress
    stopped_reason: str | None = None


@dataclass
class _StepTotals:
    """Sums over the micro-batches of one optimizer step."""

    batches: int = 0
    total: float = 0.0
    instance: float = 0.0
    prior: float = 0.0

    def add(self, losses: Losses) -> None:
        self.batches += 1
        self.total += float(losses.total.detach())
        self.instance += float(losses.instance.detach())
        if losses.prior is not None:
            self.prior += float(losses.prior.detach())

    def means(self, prior: bool) -> dict[str, float]:
        means = {STEP_LOSS: self.total / self.batches, INSTANCE_LOSS: self.instance / self.batches}
        if prior:
            means[PRIOR_LOSS] = self.prior / self.batches
        return means


def run_loop(
    trainer: LoopTrainer,
    progress: Progress,
    *,
    trained_modules: Sequence[torch.nn.Module],
    step_loss: Callable[[int, int, Sequence[int]], Losses],
    save: Callable[[Progress], object],
    examples: int,
    plan: Plan,
    args: argparse.Namespace,
    log: logging.Logger,
) -> Outcome:
    """The training loop DreamBooth and the SDXL LoRA share: accumulation, the non-finite stop,
    fp16 overflow skips, metric lines, checkpoint cadence and the epoch loss.

    What differs is passed in: `step_loss(epoch, batch_index, example_indices)` makes one batch
    and computes its loss, `save(progress)` writes a checkpoint, `trained_modules` are put in
    training mode each epoch, and `log` gets the fp16 overflow warnings.
    """
    accumulation = args.gradient_accumulation_steps
    prior = args.with_prior_preservation
    accelerator, optimizer = trainer.accelerator, trainer.optimizer
    while progress.optimizer_steps < plan.total_steps and progress.epoch <= plan.epochs:
        epoch = progress.epoch
        batches = epoch_batches(examples, args.batch_size, args.seed, epoch)
        for module in trained_modules:
            module.train()
        totals = _StepTotals()
        for index in range(progress.batch_in_epoch, len(batches)):
            group_start = index - index % accumulation
            group_size = min(accumulation, len(batches) - group_start)
            losses = step_loss(epoch, index, batches[index])
            if not torch.isfinite(losses.total):
                return _stop_non_finite(
                    optimizer, progress, epoch, index, "loss", float(losses.total.detach())
                )
            # Accelerate divides by gradient_accumulation_steps; an epoch's last group may be
            # shorter, and its mean must still be a mean.
            accelerator.backward(
                losses.total * accelerator.gradient_accumulation_steps / group_size
            )
            totals.add(losses)
            progress.epoch_loss_sum += float(losses.total.detach())
            progress.epoch_batches_seen += 1
            if index + 1 < group_start + group_size:
                continue
            grad_norm = accelerator.clip_grad_norm_(trainer.parameters, args.max_grad_norm)
            if not torch.isfinite(grad_norm):
                if accelerator.scaler is None:
                    return _stop_non_finite(
                        optimizer, progress, epoch, index, "gradient norm", float(grad_norm)
                    )
                # fp16: an overflow is the loss scaler's business; it skips this step and lowers
                # its scale. Only a long run of them means the training itself has diverged.
                progress.skipped_in_a_row += 1
                log.warning(
                    "fp16 gradient overflow at step %d: step skipped", progress.optimizer_steps + 1
                )
                if progress.skipped_in_a_row > MAX_SKIPPED_STEPS_IN_A_ROW:
                    return _stop_non_finite(
                        optimizer, progress, epoch, index, "gradient norm", float(grad_norm)
                    )
            else:
                progress.skipped_in_a_row = 0
            optimizer.step()
            trainer.lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            progress.optimizer_steps += 1
            progress.batch_in_epoch = index + 1
            progress.last_losses = totals.means(prior)
            totals = _StepTotals()
            print(
                metric_line(
                    epoch=epoch,
                    step=progress.optimizer_steps,
                    **progress.last_losses,
                    **{LEARNING_RATE: float(trainer.lr_scheduler.get_last_lr()[0])},
                ),
                flush=True,
            )
            if progress.optimizer_steps >= plan.total_steps:
                break
            if args.checkpoint_steps and progress.optimizer_steps % args.checkpoint_steps == 0:
                save(progress)
        # A cut-short epoch (max_steps) only saw some of its batches; the mean is over those.
        if progress.epoch_batches_seen:
            record = {
                "epoch": epoch,
                EPOCH_LOSS: progress.epoch_loss_sum / progress.epoch_batches_seen,
            }
            print(metric_line(**record), flush=True)
            progress.history.append(record)
        if progress.batch_in_epoch >= len(batches):
            progress.epoch += 1
            progress.batch_in_epoch = 0
            progress.epoch_loss_sum, progress.epoch_batches_seen = 0.0, 0
    return Outcome(progress=progress)


def train(
    trainer: Trainer,
    models: Models,
    examples: Examples,
    batch_args: Mapping[str, Any],
    plan: Plan,
    args: argparse.Namespace,
) -> Outcome:
    def step_loss(epoch: int, index: int, indices: Sequence[int]) -> Losses:
        batch = make_batch(examples, indices, epoch=epoch, **batch_args)
        return training_step_loss(models, batch, step_generator(args.seed, epoch, index))

    trained: list[torch.nn.Module] = [trainer.unet]
    if trainer.train_text_encoder:
        trained.append(trainer.text_encoder)
    return run_loop(
        trainer,
        restore_checkpoint(trainer, args) or Progress(),
        trained_modules=trained,
        step_loss=step_loss,
        save=lambda progress: save_checkpoint(trainer, progress, args),
        examples=len(examples),
        plan=plan,
        args=args,
        log=LOG,
    )


def _stop_non_finite(
    optimizer: torch.optim.Optimizer,
    progress: Progress,
    epoch: int,
    batch: int,
    what: str,
    value: float,
) -> Outcome:
    # The bad gradients are dropped before any optimizer step, so the weights in memory are the
    # last good ones: those are what gets exported.
    optimizer.zero_grad(set_to_none=True)
    print(metric_line(epoch=epoch, step=progress.optimizer_steps, **{STEP_LOSS: value}), flush=True)
    reason = (
        f"non-finite {what} ({value}) at epoch {epoch}, batch {batch}: training stopped, "
        f"keeping the weights after {progress.optimizer_steps} good optimizer steps"
    )
    LOG.error(reason)
    return Outcome(progress=progress, stopped_reason=reason)


# --------------------------------------------------------------------------------------------
# Setup


def read_dataset(args: argparse.Namespace) -> tuple[list[Path], str, str | None, list[Path]]:
    """Instance images, instance prompt, class prompt and the dataset's own class images."""
    if not args.dataset_dir.is_dir():
        raise TrainingError(
            f"{args.dataset_dir} is not a directory: attach the dataset as the `training` channel"
        )
    try:
        info = read_dataset_info(args.dataset_dir, prior_preservation=args.with_prior_preservation)
        instances = instance_image_paths(args.dataset_dir)
        dataset_class_images = class_image_paths(args.dataset_dir)
    except DatasetError as error:
        raise TrainingError(str(error)) from error
    if not instances:
        raise TrainingError(
            f"{args.dataset_dir} holds no instance images: put 4-20 .png/.jpg/.jpeg pictures "
            "of the subject at its top level"
        )
    return instances, info.instance_prompt, info.class_prompt, dataset_class_images


def training_plan(args: argparse.Namespace, instances: int) -> Plan:
    """The run's steps: with prior preservation an epoch covers the larger of the instance
    and class image sets (dreambooth/data.py Examples)."""
    examples = instances
    if args.with_prior_preservation:
        examples = max(instances, args.num_class_images)
    return plan_steps(
        examples,
        args.batch_size,
        args.gradient_accumulation_steps,
        args.epochs,
        args.max_steps,
    )


def class_images_wanted(
    args: argparse.Namespace, dataset_class_images: Sequence[Path], log: logging.Logger
) -> tuple[Path, list[Path], list[int]]:
    """Where generated class images go (beside the checkpoints), the class images to train on
    and the indices of those still to generate; logged."""
    generated_dir = args.checkpoint_dir / GENERATED_CLASS_DIR
    images, missing = class_image_list(dataset_class_images, generated_dir, args.num_class_images)
    log.info(
        "prior preservation: %d class images wanted, %d in the dataset, %d to generate",
        args.num_class_images,
        min(len(dataset_class_images), args.num_class_images),
        len(missing),
    )
    return generated_dir, images, missing


def prepare_class_images(
    args: argparse.Namespace,
    components: Components,
    class_prompt: str,
    dataset_class_images: Sequence[Path],
    accelerator: Accelerator,
    *,
    base: ModelInput,
) -> tuple[list[Path], int]:
    """The class images to train on, generating the missing ones; and how many were generated."""
    generated_dir, images, missing = class_images_wanted(args, dataset_class_images, LOG)
    if missing:
        pipeline = build_pipeline(components, base.location, args.mode, base.revision)
        generate_class_images(
            pipeline,
            prompt=class_prompt,
            indices=missing,
            directory=generated_dir,
            resolution=args.resolution,
            inference_steps=args.class_image_inference_steps,
            batch_size=args.class_image_batch_size,
            seed=args.seed,
            autocast=accelerator.autocast,
        )
    return images, len(missing)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def timed(log: logging.Logger, label: str) -> Iterator[None]:
    """Log how long the block took (not when it raised)."""
    started = time.monotonic()
    yield
    log.info("%s took %.1f s", label, time.monotonic() - started)


# --------------------------------------------------------------------------------------------
# Entry points


def main(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    seed_everything(args.seed)
    mixed_precision = resolve_mixed_precision(args.mixed_precision)
    instances, instance_prompt, class_prompt, dataset_class_images = read_dataset(args)
    LOG.info(
        "%s DreamBooth of %s on %d instance images (%r), mixed precision %s",
        args.mode,
        args.start_from or args.base_model,
        len(instances),
        instance_prompt,
        mixed_precision,
    )
    # Fail before minutes of loading, class-image generation and training, not after.
    if args.use_8bit_adam and not torch.cuda.is_available():
        raise TrainingError("use_8bit_adam needs a CUDA GPU (bitsandbytes); set it false on CPU")
    try:
        serving_files(args.mode)
    except ExportError as error:
        raise TrainingError(str(error)) from error
    # Every file checked against its manifest before anything loads (a job never downloads).
    base = resolve_base_model(args)
    clipseg = resolve_clipseg(args, base) if args.mode == INPAINTING else None
    source, revision = base.location, base.revision
    LOG.info("base model %s at %s", source, revision or "the folder's files")
    components = load_components(source, args.mode, revision)
    class_images: list[Path] = []
    generated = 0
    plan = training_plan(args, len(instances))
    # Before class-image generation, which runs on the accelerator's device and autocast.
    trainer, models = make_trainer(components, args, plan, mixed_precision)
    if args.with_prior_preservation:
        if class_prompt is None:  # read_dataset_info demands it; this keeps the types honest
            raise TrainingError("prior preservation needs class_prompt in dataset_info.json")
        with timed(LOG, "class image generation"):
            class_images, generated = prepare_class_images(
                args,
                components,
                class_prompt,
                dataset_class_images,
                trainer.accelerator,
                base=base,
            )
    examples = Examples(instance_images=instances, class_images=class_images)
    tokenizer = components.tokenizer
    batch_args = {
        "seed": args.seed,
        "resolution": args.resolution,
        "center_crop": args.center_crop,
        "instance_ids": tokenize(tokenizer, instance_prompt),
        "class_ids": tokenize(tokenizer, class_prompt)
        if args.with_prior_preservation and class_prompt
        else None,
        "inpainting": args.mode == INPAINTING,
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
        raise TrainingError(f"{outcome.stopped_reason}; nothing was learned, no model saved")
    summary = build_summary(
        args,
        outcome,
        plan,
        kind={"mode": args.mode},
        base=base,
        mixed_precision=mixed_precision,
        instances=len(instances),
        class_images={"used": len(class_images), "generated": generated},
        seconds=time.monotonic() - started,
    )
    components.unet = trainer.accelerator.unwrap_model(trainer.unet)
    components.text_encoder = trainer.accelerator.unwrap_model(trainer.text_encoder)
    # The archive holds float32 weights whatever the training precision; the endpoint picks its
    # own dtype when it loads them. The frozen modules were cast to the training precision, and
    # casting them back would export fp16-rounded copies: the base's own weights go instead.
    frozen = load_frozen_components(source, revision, train_text_encoder=args.train_text_encoder)
    components.vae = frozen.vae
    if frozen.text_encoder is not None:
        components.text_encoder = frozen.text_encoder
    components.text_encoder.float()
    pipeline = build_pipeline(components, source, args.mode, revision)
    try:
        with timed(LOG, "export"):
            export_archive(
                args.model_dir,
                pipeline,
                mode=args.mode,
                clipseg_source=clipseg.location if clipseg is not None else None,
                clipseg_revision=clipseg.revision if clipseg is not None else None,
                summary=summary,
                manifest_source=training_job_source(
                    base.source, **({"clipseg": clipseg.source} if clipseg is not None else {})
                ),
            )
    except ExportError as error:
        raise TrainingError(f"export failed: {error}") from error
    write_summary(args.output_data_dir, summary)
    return summary


def build_summary(
    args: argparse.Namespace,
    outcome: Outcome,
    plan: Plan,
    *,
    kind: Mapping[str, Any],
    base: ModelInput,
    mixed_precision: str,
    instances: int,
    class_images: Mapping[str, int],
    seconds: float,
) -> dict[str, Any]:
    """`training_summary.json` of a DreamBooth or SDXL LoRA run; `kind` says which (its keys
    come after the status)."""
    stopped = outcome.stopped_reason is not None
    return {
        "status": "stopped_non_finite" if stopped else "completed",
        "stopped_non_finite": stopped,
        "stopped_reason": outcome.stopped_reason,
        **kind,
        "base_model": args.base_model,
        "base_model_revision": args.base_model_revision,
        "model_source": base.location,
        "base_source": dict(base.source),
        "mixed_precision": mixed_precision,
        "hyperparameters": {
            key: value if isinstance(value, int | float | str | None) else str(value)
            for key, value in vars(args).items()
            if not key.endswith(("_dir", "_file", "_channel"))
        },
        "instance_images": instances,
        "class_images": dict(class_images),
        "optimizer_steps": outcome.progress.optimizer_steps,
        "planned_steps": plan.total_steps,
        "final_losses": outcome.progress.last_losses,
        "epochs": outcome.progress.history,
        "seconds": round(seconds, 1),
    }


def run(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    return run_with_args(parse_args(argv))


def run_with_args(args: argparse.Namespace) -> int:
    """Train; 0 when a model was saved, 1 (and SageMaker's failure file) when none could be."""
    return run_training(main, args, LOG, gpu_memory_hint=GPU_MEMORY_HINT)


def run_training(
    main: Callable[[argparse.Namespace], Mapping[str, Any]],
    args: argparse.Namespace,
    log: logging.Logger,
    *,
    gpu_memory_hint: str,
) -> int:
    """Run `main` as a SageMaker job (sagemaker_job.run_job); running out of GPU memory is a
    failure with `gpu_memory_hint` as its reason, anything unexpected is one too, re-raised."""
    try:
        return run_job(main, args, log)
    except torch.cuda.OutOfMemoryError as error:
        log.error("GPU out of memory: %s", error)
        write_failure(args.failure_file, f"GPU out of memory: {gpu_memory_hint}")
        return 1
    except Exception as error:
        # Still a failure reason for the console, then the traceback in the log.
        write_failure(args.failure_file, f"unexpected {type(error).__name__}: {error}")
        raise


if __name__ == "__main__":
    sys.exit(run())
