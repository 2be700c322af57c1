"""The latent space: the VAE and its scan over latent sizes, latent-space outliers, the normalizing flow
p(latents | parameters) and its closure test. Reads: ``results/images/<survey>/shard-NNNN.h5``,
``results/structure/*.parquet``. Writes: ``results/vae/``, ``results/outliers/``, ``results/flow/``.
"""
