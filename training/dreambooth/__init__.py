"""Stable Diffusion DreamBooth fine-tuning (JumpStart-style): the dataset checker and builder,
the training script and the endpoint's handler."""
