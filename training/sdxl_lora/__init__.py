"""DreamBooth-LoRA fine-tuning of Stable Diffusion XL: one small adapter per product."""
