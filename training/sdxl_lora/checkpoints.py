"""Checkpoints of a LoRA run: only the LoRA weights (megabytes; the frozen base is the staged
channel's and is never copied), optimizer, schedule, loss scaler, progress and RNG, in the
shared `step-<n>` folders (checkpoint_dirs.py), resumed only by a run of the same kind."""

from __future__ import annotations

import argparse
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from checkpoint_dirs import atomic_checkpoint, checkpoint_name, resume_progress
from dreambooth.checkpoints import Progress
from sdxl_lora.steps import LoraTrainer

LOG = logging.getLogger("sdxl_lora.train")

CHECKPOINT_FILE = "checkpoint.pt"


def _fingerprint(args: argparse.Namespace) -> dict[str, Any]:
    # What makes a checkpoint's weights and optimizer state fit this run.
    return {
        "trainer": "sdxl-lora",
        "base_model": args.base_model,
        "base_model_revision": args.base_model_revision,
        "base_model_manifest_sha256": args.base_model_manifest_sha256,
        "rank": args.rank,
        "lora_alpha": args.lora_alpha,
        "train_text_encoder": args.train_text_encoder,
    }


def lora_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The module's trained (LoRA) weights by name."""
    return {
        name: parameter.detach().cpu().clone()
        for name, parameter in module.named_parameters()
        if parameter.requires_grad
    }


def load_lora_state(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Put saved LoRA weights back; they must be exactly this module's trained weights."""
    expected = {name for name, parameter in module.named_parameters() if parameter.requires_grad}
    if set(state) != expected:
        raise ValueError(
            f"its LoRA weights do not match this run's ({len(state)} saved, {len(expected)} "
            "trained)"
        )
    unexpected = module.load_state_dict(state, strict=False).unexpected_keys
    if unexpected:
        raise ValueError(f"unexpected weights {unexpected[:3]}")


def save_checkpoint(trainer: LoraTrainer, progress: Progress, args: argparse.Namespace) -> Path:
    scaler = trainer.accelerator.scaler
    with atomic_checkpoint(
        args.checkpoint_dir,
        progress.optimizer_steps,
        marker=CHECKPOINT_FILE,
        keep=args.keep_checkpoints,
    ) as partial:
        torch.save(
            {
                "fingerprint": _fingerprint(args),
                "lora": {
                    name: lora_state(module) for name, module in trainer.trained_modules().items()
                },
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


def restore_checkpoint(trainer: LoraTrainer, args: argparse.Namespace) -> Progress | None:
    """Load the newest readable checkpoint; an unreadable one (a sync cut short) is skipped."""
    fingerprint = _fingerprint(args)

    def load(path: Path) -> Progress:
        state = torch.load(path / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
        if state["fingerprint"] != fingerprint:
            raise ValueError(f"it belongs to another run ({state['fingerprint']})")
        modules = trainer.trained_modules()
        if set(state["lora"]) != set(modules):
            raise ValueError(f"it trained {sorted(state['lora'])}, this run {sorted(modules)}")
        for name, module in modules.items():
            load_lora_state(module, state["lora"][name])
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.lr_scheduler.load_state_dict(state["lr_scheduler"])
        if trainer.accelerator.scaler is not None and state["scaler"] is not None:
            trainer.accelerator.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        if torch.cuda.is_available() and state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        return Progress(**state["progress"])

    return resume_progress(args.checkpoint_dir, CHECKPOINT_FILE, load, LOG)
