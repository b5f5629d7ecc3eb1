"""Stable Diffusion behind SageMaker endpoints: `POST /generations` and `POST /styling`."""
