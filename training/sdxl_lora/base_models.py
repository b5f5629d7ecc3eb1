"""The SDXL base a LoRA is trained on when none is named: repository id and pinned commit.

The commit is the one several unrelated public projects pin for this repository (found by
searching public source code, 2026-12-08; docs/product-images.md). A job loads it only from
the staged `model` channel.
"""

from __future__ import annotations

SDXL_BASE_MODEL = "stabilityai/stable-diffusion-xl-base-1.0"
SDXL_BASE_REVISION = "462165984030d82259a11f4367a4eed129e94a7b"
