"""Domain logic of image generation: no AWS event shapes, no boto3."""
