"""Domain logic of generation and styling: no AWS event shapes, no boto3."""
