"""The data stage's real sources: a folder of FITS or colour images, the Legacy Survey cutout service and
Galaxy Zoo DECaLS (Zenodo), Euclid Q1, MaNGA; and which stages the data allow (:mod:`.plan`).
Reads: downloads or a local folder. Writes: ``results/catalog/{catalog,labels}.parquet``,
``data/{local,legacysurvey}/<survey>/shard-NNNN.h5``, ``results/data/failures.csv``.
"""
