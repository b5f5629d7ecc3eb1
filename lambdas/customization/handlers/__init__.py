"""Thin Lambda entry points of Titan customization."""
