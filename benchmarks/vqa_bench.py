"""Benchmarks of the attribute model (`make bench`).

1. Batched answering: 8 questions about one image answered by `vqa.inference.answer_prompts` in
   one call (image encoded once, one batched generate) versus 8 calls of one question each, on a
   small random BLIP-2 on CPU. Target: the batched call at least 3x faster. Both sides run the
   same weights and produce the same answers (checked), so the ratio is the saving alone.
2. Batched images (Batch Transform's MultiRecord): images per second when the handler answers
   8 questions about each of 16 images at batch 1, 8 and 16 images per call
   (`vqa.inference.answer_batch`: one vision pass, one generate per call), on the tiny test
   BLIP-2 (32 px) and on the small one above. Target (on the tiny one): batch 16 at least 4x
   batch 1 on CPU. The tiny model is all per-call overhead, which batching removes; the small
   one is compute-bound on a CPU, where the vision tower's work grows with the batch, so its
   gain is the lower, more realistic figure. Answers are checked identical at every batch size.
3. LoRA's trainable-parameter fraction on the real `Salesforce/blip2-flan-t5-xl` architecture,
   built with empty (meta) weights from its published configuration: nothing is downloaded and
   no memory is allocated for the 3.9 billion parameters.

Ratios measured in one run on one machine travel between machines better than absolute times.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "training")]

import torch  # noqa: E402
from accelerate import init_empty_weights  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import Blip2Config, Blip2ForConditionalGeneration  # noqa: E402

from tests.vqa_model_support import build_tiny_blip2  # noqa: E402
from vqa.inference import answer_batch, answer_prompts, build_prompt, model_fn  # noqa: E402

QUESTIONS = [
    "What is the fabric of the garment in this picture?",
    "What is the fit of the garment in this picture?",
    "What is the collar type of the garment in this picture?",
    "What is the pattern of the garment in this picture?",
    "What is the neck type of the garment in this picture?",
    "What is the sleeve length of the garment in this picture?",
    "What is the sleeve styling of the garment in this picture?",
    "What is the colour of the garment in this picture?",
]
TARGET_SPEEDUP = 3.0
IMAGE_BATCHES = (1, 8, 16)
IMAGES = 16
TARGET_BATCH_GAIN = 4.0
REPEATS = 7
MAX_NEW_TOKENS = 8

# A "small" BLIP-2: the tiny test model's shapes scaled up until the vision tower does real work
# (224 px, 256 patches, as the real model sees them), still seconds on a laptop CPU.
SMALL = {
    "image_size": 224,
    "vision": {
        "hidden_size": 128,
        "intermediate_size": 512,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "patch_size": 14,
    },
    "qformer": {
        "hidden_size": 128,
        "intermediate_size": 512,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
    },
    "text": {"d_model": 128, "d_kv": 32, "d_ff": 256, "num_layers": 2, "num_heads": 4},
    "num_query_tokens": 32,
}

# Salesforce/blip2-flan-t5-xl's config.json (the parts that set parameter counts).
FLAN_T5_XL = Blip2Config(
    vision_config={
        "hidden_size": 1408, "intermediate_size": 6144, "num_hidden_layers": 39,
        "num_attention_heads": 16, "image_size": 224, "patch_size": 14,
    },
    qformer_config={
        "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
        "num_attention_heads": 12, "encoder_hidden_size": 1408, "vocab_size": 30522,
        "cross_attention_frequency": 2,
    },
    text_config={
        "model_type": "t5", "vocab_size": 32128, "d_model": 2048, "d_kv": 64, "d_ff": 5120,
        "num_layers": 24, "num_decoder_layers": 24, "num_heads": 32,
        "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False,
    },
    num_query_tokens=32,
)  # fmt: skip


def batched_versus_separate(model_dir: Path) -> dict[str, float]:
    loaded = model_fn(str(model_dir))
    image = Image.new("RGB", (640, 480), (40, 60, 120))
    prompts = [build_prompt(question) for question in QUESTIONS]

    def batched() -> list[str]:
        return answer_prompts(loaded, image, prompts, max_new_tokens=MAX_NEW_TOKENS)

    def separate() -> list[str]:
        return [
            answer_prompts(loaded, image, [prompt], max_new_tokens=MAX_NEW_TOKENS)[0]
            for prompt in prompts
        ]

    if batched() != separate():
        raise SystemExit("batched and separate answers differ: the comparison would be unfair")
    timings: dict[str, list[float]] = {"batched": [], "separate": []}
    for _ in range(REPEATS):
        for name, call in (("batched", batched), ("separate", separate)):
            started = time.perf_counter()
            call()
            timings[name].append(time.perf_counter() - started)
    batched_s = statistics.median(timings["batched"])
    separate_s = statistics.median(timings["separate"])
    return {"batched_s": batched_s, "separate_s": separate_s, "speedup": separate_s / batched_s}


def images_per_second(model_dir: Path) -> dict[int, float]:
    """16 different images, 8 questions each, answered `batch` images per call."""
    loaded = model_fn(str(model_dir))
    images = [Image.new("RGB", (640, 480), (15 * i, 200 - 10 * i, 90)) for i in range(IMAGES)]
    prompts = [build_prompt(question) for question in QUESTIONS]

    def run(batch: int) -> list[list[str]]:
        answers: list[list[str]] = []
        for start in range(0, IMAGES, batch):
            chunk = images[start : start + batch]
            answers += answer_batch(
                loaded, chunk, [prompts] * len(chunk), max_new_tokens=MAX_NEW_TOKENS
            )
        return answers

    reference = run(1)
    if any(run(batch) != reference for batch in IMAGE_BATCHES[1:]):
        raise SystemExit("answers differ between batch sizes: the comparison would be unfair")
    timings: dict[int, list[float]] = {batch: [] for batch in IMAGE_BATCHES}
    for _ in range(3):
        for batch in IMAGE_BATCHES:
            started = time.perf_counter()
            run(batch)
            timings[batch].append(time.perf_counter() - started)
    return {batch: IMAGES / statistics.median(times) for batch, times in timings.items()}


def lora_fraction() -> dict[str, float]:
    with init_empty_weights():
        model = Blip2ForConditionalGeneration(FLAN_T5_XL)
        model = get_peft_model(
            model,
            LoraConfig(r=8, lora_alpha=32, lora_dropout=0.05, bias="none",
                       target_modules=["q", "v"]),
        )  # fmt: skip
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": trainable, "total": total, "fraction": trainable / total}


def small_model(directory: Path) -> Path:
    """The tiny test model's builder, then re-initialised at the SMALL shapes."""
    build_tiny_blip2(directory)
    config = Blip2Config.from_pretrained(directory)
    config.vision_config.update({**SMALL["vision"], "image_size": SMALL["image_size"]})
    config.qformer_config.update(
        {**SMALL["qformer"], "encoder_hidden_size": SMALL["vision"]["hidden_size"]}
    )
    config.text_config.update(SMALL["text"])
    config.num_query_tokens = SMALL["num_query_tokens"]
    torch.manual_seed(0)
    Blip2ForConditionalGeneration(config).save_pretrained(directory)
    processor_config = directory / "processor_config.json"
    processor_config.write_text(
        processor_config.read_text().replace(
            '"num_query_tokens": 4', f'"num_query_tokens": {SMALL["num_query_tokens"]}'
        )
    )
    preprocessor = directory / "preprocessor_config.json"
    preprocessor.write_text(
        preprocessor.read_text().replace('"height": 32', f'"height": {SMALL["image_size"]}')
        .replace('"width": 32', f'"width": {SMALL["image_size"]}')
    )  # fmt: skip
    return directory


def main() -> int:
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = small_model(Path(scratch) / "small")
        result = batched_versus_separate(model_dir)
        small_rates = images_per_second(model_dir)
        rates = images_per_second(build_tiny_blip2(Path(scratch) / "tiny"))
    print(
        f"vqa answers, {len(QUESTIONS)} questions about one image (median of {REPEATS}): "
        f"one batched call {result['batched_s'] * 1000:.0f} ms, {len(QUESTIONS)} separate calls "
        f"{result['separate_s'] * 1000:.0f} ms, speedup {result['speedup']:.1f}x "
        f"(target >= {TARGET_SPEEDUP}x)"
    )
    device = "GPU" if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    gain = rates[IMAGE_BATCHES[-1]] / rates[1]
    for name, measured in (("tiny", rates), ("small", small_rates)):
        print(
            f"vqa images per second, {name} BLIP-2, {len(QUESTIONS)} questions each ({device}, "
            "median of 3): "
            + ", ".join(f"batch {batch} {rate:.1f}/s" for batch, rate in measured.items())
            + f"; batch {IMAGE_BATCHES[-1]} is "
            f"{measured[IMAGE_BATCHES[-1]] / measured[1]:.1f}x batch 1"
            + (f" (target >= {TARGET_BATCH_GAIN}x)" if name == "tiny" else "")
        )
    lora = lora_fraction()
    print(
        f"LoRA r=8 on q,v of blip2-flan-t5-xl: {lora['trainable'] / 1e6:.2f} M trainable of "
        f"{lora['total'] / 1e9:.2f} B parameters ({lora['fraction'] * 100:.3f}%)"
    )
    return 0 if result["speedup"] >= TARGET_SPEEDUP and gain >= TARGET_BATCH_GAIN else 1


if __name__ == "__main__":
    sys.exit(main())
