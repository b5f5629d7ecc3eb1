"""What the dataset builders (`vqa.prepare`, `titan.prepare`, `dreambooth.prepare`) share: image
reading and format checks, the output folder and exit statuses, the S3 destination and the
upload. Each builder keeps only its own rules, its build and its command line.

Also what the training scripts share about models: the manifest of a model folder (`manifest`)
and the verified folder a job loads its base model from (`base_model_channel`).

Part of the training code asset like the rest of training/ (imported as `common.<module>`);
only the standard library, Pillow and, for uploads, boto3.
"""
