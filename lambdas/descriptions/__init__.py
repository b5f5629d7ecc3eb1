"""Product descriptions from photos: image → attributes (SageMaker) → text (Bedrock)."""
