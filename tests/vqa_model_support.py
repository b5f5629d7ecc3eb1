"""A tiny BLIP-2 (ViT → Q-Former → T5) with its processor, built from config, no download.

The shapes follow `Salesforce/blip2-flan-t5-xl` in miniature: the same classes, the same image
placeholder tokens, a T5 tokenizer with sentencepiece-style spaces, so `train.py` and
`inference.py` run the exact code paths they run on the real model.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers.processors import TemplateProcessing
from transformers import (
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2Processor,
    BlipImageProcessor,
    T5TokenizerFast,
)

IMAGE_SIZE = 32
NUM_QUERY_TOKENS = 4

# Enough text for the tokenizer to spell any question and answer the fashion datasets produce.
BASE_CORPUS = (
    "Question: What is the fabric fit collar pattern neck type sleeve length styling colour of "
    "the garment in this picture? Answer: Fabric: Cotton Polyester Linen Fit: Regular Slim "
    "Collar: Spread Button Down Pattern: Solid Striped Checked Neck: Round V-Neck Sleeve Length: "
    "Long Short Sleeves Sleeve Styling: Regular Roll-up Colour: Red Blue Green White Black Navy "
    "Grey abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 -:?,.'/()"
)


def _sentencepiece_like_tokenizer(corpus: Iterable[str], vocab_size: int) -> T5TokenizerFast:
    """A Unigram tokenizer with Metaspace, like T5's: decoding gives back the exact text."""
    backend = Tokenizer(models.Unigram())
    backend.normalizer = normalizers.NFKC()
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
    )
    backend.train_from_iterator(list(corpus), trainer=trainer)
    # T5 appends </s> to every sequence; the post-processor makes the fast tokenizer do it too.
    eos_id = backend.token_to_id("</s>")
    backend.post_processor = TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos_id)]
    )
    return T5TokenizerFast(
        tokenizer_object=backend,
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_ids=0,
    )


def build_tiny_blip2(
    directory: Path, *, extra_corpus: Iterable[str] = (), vocab_size: int = 160, seed: int = 0
) -> Path:
    """Save a randomly initialised tiny BLIP-2 and its processor to `directory` and return it."""
    import torch

    tokenizer = _sentencepiece_like_tokenizer([BASE_CORPUS, *extra_corpus], vocab_size)
    processor = Blip2Processor(
        image_processor=BlipImageProcessor(
            size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, do_convert_rgb=True
        ),
        tokenizer=tokenizer,
        num_query_tokens=NUM_QUERY_TOKENS,
    )
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    config = Blip2Config(
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": 8,
        },
        qformer_config={
            "hidden_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 32,
            "encoder_hidden_size": 16,
            "vocab_size": 64,
            "max_position_embeddings": 32,
        },
        text_config={
            "model_type": "t5",
            "vocab_size": len(tokenizer),
            "d_model": 16,
            "d_kv": 8,
            "d_ff": 32,
            "num_layers": 1,
            "num_decoder_layers": 1,
            "num_heads": 2,
            "feed_forward_proj": "gated-gelu",
            "tie_word_embeddings": False,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "decoder_start_token_id": tokenizer.pad_token_id,
        },
        num_query_tokens=NUM_QUERY_TOKENS,
        image_token_index=image_token_id,
    )
    torch.manual_seed(seed)
    model = Blip2ForConditionalGeneration(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
