"""Tiny Stable Diffusion pipelines (text-to-image and inpainting) and a tiny CLIPSeg, from config.

The same classes as `stabilityai/stable-diffusion-2-1-base`, `stabilityai/stable-diffusion-2-
inpainting` and `CIDAS/clipseg-rd64-refined`, in miniature and randomly initialised, saved in the
layouts those hub repositories have, so `dreambooth/train.py`, `dreambooth/inference.py` and
`styling/inference.py` load them exactly as they load the real ones. No download.

The CLIP tokenizer is a byte-level BPE with no merges: every byte is a token, so any prompt
tokenizes, and `<|startoftext|>`/`<|endoftext|>` are where the real tokenizer has them.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

# Pixels per side of the images the tiny pipelines make and train on: a multiple of the VAE's
# scale factor (2) times the UNet's (2).
IMAGE_SIZE = 32
TEXT_HIDDEN_SIZE = 16
MAX_TEXT_LENGTH = 77
CLIPSEG_IMAGE_SIZE = 32


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte → printable character table."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    characters = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            characters.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in characters), strict=True))


def build_clip_tokenizer(directory: Path) -> Path:
    """Save a `CLIPTokenizer` (vocab.json, merges.txt) with one token per byte to `directory`."""
    from transformers import CLIPTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    symbols = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for symbol in [*symbols, *(f"{s}</w>" for s in symbols)]:
        vocab[symbol] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tokenizer = CLIPTokenizer(
        vocab_file=str(directory / "vocab.json"),
        merges_file=str(directory / "merges.txt"),
        model_max_length=MAX_TEXT_LENGTH,
        # SD 2 pads with "!" (id 0), as the real tokenizer_config does.
        pad_token="!",
    )
    tokenizer.save_pretrained(directory)
    return directory


def _vocab_size(tokenizer_dir: Path) -> int:
    return len(json.loads((tokenizer_dir / "vocab.json").read_text(encoding="utf-8")))


def _text_config(vocab_size: int) -> dict[str, object]:
    return {
        "vocab_size": vocab_size,
        "hidden_size": TEXT_HIDDEN_SIZE,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": MAX_TEXT_LENGTH,
        "projection_dim": TEXT_HIDDEN_SIZE,
        "hidden_act": "gelu",
        "bos_token_id": vocab_size - 2,
        "eos_token_id": vocab_size - 1,
        "pad_token_id": 0,
    }


def build_tiny_stable_diffusion(
    directory: Path, *, inpainting: bool = False, seed: int = 0
) -> Path:
    """Save a tiny `StableDiffusionPipeline` (or, with `inpainting`, a
    `StableDiffusionInpaintPipeline`: 9 UNet input channels) in the hub layout to `directory`."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer_dir = build_clip_tokenizer(Path(scratch))
        tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
        vocab_size = _vocab_size(tokenizer_dir)
    text_encoder = CLIPTextModel(CLIPTextConfig(**_text_config(vocab_size)))
    unet = UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 2,
        in_channels=9 if inpainting else 4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_HIDDEN_SIZE,
        attention_head_dim=2,
        norm_num_groups=4,
        # SD 2's UNet uses linear projections in its transformer blocks.
        use_linear_projection=True,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=IMAGE_SIZE,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        # SD 2.1 base predicts the noise (the 768 px model predicts v).
        prediction_type="epsilon",
    )
    pipeline_class = StableDiffusionInpaintPipeline if inpainting else StableDiffusionPipeline
    pipeline = pipeline_class(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(directory)
    return directory


def build_tiny_clipseg(directory: Path, *, seed: int = 0) -> Path:
    """Save a tiny `CLIPSegForImageSegmentation` and its `CLIPSegProcessor` to `directory`."""
    import torch
    from transformers import (
        CLIPSegConfig,
        CLIPSegForImageSegmentation,
        CLIPSegProcessor,
        CLIPTokenizer,
        ViTImageProcessor,
    )

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer_dir = build_clip_tokenizer(Path(scratch))
        tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
        vocab_size = _vocab_size(tokenizer_dir)
    config = CLIPSegConfig(
        text_config=_text_config(vocab_size),
        vision_config={
            "hidden_size": TEXT_HIDDEN_SIZE,
            "intermediate_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": CLIPSEG_IMAGE_SIZE,
            "patch_size": 8,
            "hidden_act": "gelu",
        },
        projection_dim=TEXT_HIDDEN_SIZE,
        reduce_dim=8,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=16,
        # Indices into the vision encoder's layers (the real model: 3, 6, 9 of 12).
        extract_layers=(0, 1),
        conditional_layer=0,
    )
    model = CLIPSegForImageSegmentation(config)
    model.save_pretrained(directory)
    # The real processor resizes to 352 px and normalises with ImageNet statistics.
    processor = CLIPSegProcessor(
        image_processor=ViTImageProcessor(
            size={"height": CLIPSEG_IMAGE_SIZE, "width": CLIPSEG_IMAGE_SIZE},
            image_mean=[0.485, 0.456, 0.406],
            image_std=[0.229, 0.224, 0.225],
        ),
        tokenizer=tokenizer,
    )
    processor.save_pretrained(directory)
    return directory
