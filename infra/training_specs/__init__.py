"""Each trained model's own workflow code: what its training job runs, reads, writes and logs.

One module per training script (`vqa`, `dreambooth`, which serves both the text-to-image and the
styling model); the registry (`infra/models.py`) names the function that builds each model's
`TrainingWorkflowSpec`, and the Training stack builds every registered workflow the same way.
"""
