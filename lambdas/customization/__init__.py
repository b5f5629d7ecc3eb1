"""Titan Image Generator customization: the manifest check and the provisioned-throughput sweeper.

Both run for the Bedrock stack's workflows (infra/stacks/bedrock.py), never behind the API.
"""
