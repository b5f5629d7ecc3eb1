"""Titan Image Generator G1 fine-tuning on Bedrock: training-data builder and checker."""
