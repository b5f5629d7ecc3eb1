"""CDK code of Atelier: stage config, stacks and reusable constructs (no runtime code here)."""
