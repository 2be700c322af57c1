"""What every stage shares: file I/O (HDF5 shards, Parquet tables), the failures table, safe ids, survey
descriptions, the config and its validation, resampling, the Galaxy Zoo questions, the device, job logs
and the gather jobs. Reads and writes nothing of its own.
"""
