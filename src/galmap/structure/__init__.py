"""Structure: batched PSF-convolved Sérsic fits and statmorph morphometry, and the parameter tables
built from them. Reads: ``results/images/<survey>/shard-NNNN.h5``. Writes:
``results/structure/{sersic,morphometry}.parquet``, ``results/structure/failures.csv``.
"""
