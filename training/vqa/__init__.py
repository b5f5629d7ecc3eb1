"""BLIP-2 attribute model: dataset builder, LoRA fine-tuning and the endpoint's handler."""
