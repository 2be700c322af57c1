"""Tests of the latent stage."""
