"""Domain logic of the description pipeline: no AWS event shapes, no boto3."""
