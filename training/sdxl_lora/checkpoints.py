"""Checkpoints of a LoRA run: only the LoRA weights (megabytes; the frozen base is the staged
channel's and is never copied), optimizer, schedule, loss scaler, progress and RNG, in the
shared `step-<n>` folders (checkpoint_dirs.py), resumed only by a run of the same kind."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dreambooth.checkpoints import CHECKPOINT_FILE, Progress, read_checkpoint, write_checkpoint
from sdxl_lora.steps import LoraTrainer

LOG = logging.getLogger("sdxl_lora.train")

__all__ = ["CHECKPOINT_FILE", "restore_checkpoint", "save_checkpoint"]


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
    weights = {
        "lora": {name: lora_state(module) for name, module in trainer.trained_modules().items()}
    }
    return write_checkpoint(trainer, progress, args, _fingerprint(args), weights)


def restore_checkpoint(trainer: LoraTrainer, args: argparse.Namespace) -> Progress | None:
    """Load the newest readable checkpoint; an unreadable one (a sync cut short) is skipped."""

    def load_weights(state: Mapping[str, Any]) -> None:
        modules = trainer.trained_modules()
        if set(state["lora"]) != set(modules):
            raise ValueError(f"it trained {sorted(state['lora'])}, this run {sorted(modules)}")
        for name, module in modules.items():
            load_lora_state(module, state["lora"][name])

    return read_checkpoint(trainer, args, _fingerprint(args), load_weights, LOG)
