"""Evaluation of spiking diffusion models: image losses, KID, benchmark tables."""
