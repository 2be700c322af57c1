"""The preprocessing job: one raw shard in, one preprocessed shard out.

Files in, files out (the package's conventions: :mod:`galmap`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from galmap.core.failures import FailureLog
from galmap.core.io import read_shard, read_table, write_shard

log = logging.getLogger("galmap")


def preprocess_file(
    params: Mapping[str, Any], raw_path: str, out_path: str, failures_path: str, catalog_path: str | None = None
) -> None:
    """Preprocess one raw shard file into ``out_path``; failures to ``failures_path``.

    ``catalog_path``: the catalogue whose ``psfsize_<survey>_<band>`` give each galaxy's PSF
    (``preprocess.psf: catalogue``; without those columns, the nominal PSF).
    """
    from galmap.preprocess.stamps import preprocess_shard

    failures = FailureLog("preprocess")
    shard = read_shard(raw_path)
    catalog = read_table(catalog_path) if catalog_path and params.get("psf", "catalogue") == "catalogue" else None
    out = preprocess_shard(shard, params, failures, catalog=catalog)
    write_shard(out_path, out)
    failures.write(failures_path)
    log.info("preprocessed %d galaxies of %s; %d failures", len(shard), raw_path, len(failures))
