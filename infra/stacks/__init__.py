"""One stack per lifecycle: data (stateful), training, hosting, bedrock, api."""
