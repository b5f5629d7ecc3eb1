"""Model lifecycle guard: a daily check of every Bedrock model the stage is configured to use."""
