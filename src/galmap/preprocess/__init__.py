"""Preprocessing: bad pixels, segmentation, masks, background, PSF, normalisation.
Reads: ``data/<source>/<survey>/shard-NNNN.h5``. Writes: ``results/images/<survey>/shard-NNNN.h5``,
``results/preprocess/failures.csv``.
"""
