"""Personalized images: a customized Titan Image Generator behind provisioned throughput."""
