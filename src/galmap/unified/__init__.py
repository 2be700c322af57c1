"""One latent space for every survey: per-survey encoders and decoders, translation, retrieval (docs/unified.md)."""
