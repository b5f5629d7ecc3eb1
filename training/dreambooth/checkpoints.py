"""Checkpoints a restarted spot job resumes from: trained weights, optimizer, schedule, loss
scaler, progress and RNG, only by a run of the same kind."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from checkpoint_dirs import atomic_checkpoint, checkpoint_name, resume_progress
from dreambooth.steps import LoopTrainer, Trainer

# The training script's logger: its messages read as the script's wherever they come from.
LOG = logging.getLogger("dreambooth.train")

CHECKPOINT_FILE = "checkpoint.pt"


@dataclass
class Progress:
    """Where training stands: the next micro-batch to train is `batch_in_epoch` of `epoch`."""

    epoch: int = 1
    batch_in_epoch: int = 0
    optimizer_steps: int = 0
    skipped_in_a_row: int = 0
    # The current epoch's loss so far, so that a job resumed mid-epoch (or from a checkpoint at an
    # epoch's last step, the common case) still logs the whole epoch's mean.
    epoch_loss_sum: float = 0.0
    epoch_batches_seen: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    last_losses: dict[str, float] = field(default_factory=dict)


def _fingerprint(args: argparse.Namespace) -> dict[str, Any]:
    # A checkpoint is only resumed by the same kind of run.
    return {
        "mode": args.mode,
        # What the base is, not where this container mounted it.
        "base_model": args.base_model,
        "base_model_revision": args.base_model_revision,
        "base_model_manifest_sha256": args.base_model_manifest_sha256,
        "start_from": args.start_from,
        "train_text_encoder": args.train_text_encoder,
    }


def save_checkpoint(trainer: Trainer, progress: Progress, args: argparse.Namespace) -> Path:
    weights = {
        "unet": trainer.unet.state_dict(),
        "text_encoder": trainer.text_encoder.state_dict() if trainer.train_text_encoder else None,
    }
    return write_checkpoint(trainer, progress, args, _fingerprint(args), weights)


def restore_checkpoint(trainer: Trainer, args: argparse.Namespace) -> Progress | None:
    """Load the newest readable checkpoint; an unreadable one (a sync cut short) is skipped."""

    def load_weights(state: Mapping[str, Any]) -> None:
        trainer.unet.load_state_dict(state["unet"])
        if trainer.train_text_encoder:
            trainer.text_encoder.load_state_dict(state["text_encoder"])

    return read_checkpoint(trainer, args, _fingerprint(args), load_weights, LOG)


# What every checkpoint holds, whichever weights it saves: DreamBooth's above, the SDXL LoRA's
# (sdxl_lora/checkpoints.py).


def write_checkpoint(
    trainer: LoopTrainer,
    progress: Progress,
    args: argparse.Namespace,
    fingerprint: Mapping[str, Any],
    weights: Mapping[str, Any],
) -> Path:
    """Save the run's fingerprint, `weights`, optimizer, schedule, loss scaler, progress and RNG
    as the checkpoint of step `progress.optimizer_steps`; returns its folder."""
    scaler = trainer.accelerator.scaler
    with atomic_checkpoint(
        args.checkpoint_dir,
        progress.optimizer_steps,
        marker=CHECKPOINT_FILE,
        keep=args.keep_checkpoints,
    ) as partial:
        torch.save(
            {
                "fingerprint": dict(fingerprint),
                **weights,
                "optimizer": trainer.optimizer.state_dict(),
                "lr_scheduler": trainer.lr_scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "progress": asdict(progress),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            partial / CHECKPOINT_FILE,
        )
    return Path(args.checkpoint_dir) / checkpoint_name(progress.optimizer_steps)


def read_checkpoint(
    trainer: LoopTrainer,
    args: argparse.Namespace,
    fingerprint: Mapping[str, Any],
    load_weights: Callable[[Mapping[str, Any]], None],
    log: logging.Logger,
) -> Progress | None:
    """Resume from the newest readable checkpoint of a run with this `fingerprint`:
    `load_weights` puts its weights back, the rest (optimizer to RNG) is restored here."""

    def load(path: Path) -> Progress:
        state = torch.load(path / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
        if state["fingerprint"] != fingerprint:
            raise ValueError(f"it belongs to another run ({state['fingerprint']})")
        load_weights(state)
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.lr_scheduler.load_state_dict(state["lr_scheduler"])
        if trainer.accelerator.scaler is not None and state["scaler"] is not None:
            trainer.accelerator.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        if torch.cuda.is_available() and state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        return Progress(**state["progress"])

    return resume_progress(args.checkpoint_dir, CHECKPOINT_FILE, load, log)
