"""The command groups of `atelier`, one module each."""
