"""Domain logic of Titan customization: no AWS event shapes, no boto3."""
