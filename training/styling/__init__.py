"""Virtual styling: a CLIPSeg text-prompted mask and Stable Diffusion inpainting in one endpoint."""
