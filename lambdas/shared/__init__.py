"""Code shared by every Lambda function: boto3 adapters, pydantic models, typed errors."""
