"""One SDXL text-to-image endpoint serving many LoRA adapters (one per product).

`adapter_store` finds an adapter's files (an S3 prefix or a local folder), `adapter_cache` keeps
the most recently used adapters loaded on the pipeline within a memory budget, and `inference`
is the SageMaker Hugging Face inference toolkit handler that ties them together. Like the other
handlers these modules import only the standard library, torch, diffusers, safetensors, Pillow
and (for the S3 store) boto3, all of which the inference container ships.
"""
