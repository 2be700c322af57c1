"""The preprocessing jobs: one raw shard in, one preprocessed shard out; or one shard of every survey at once.

Files in, files out (the package's conventions: :mod:`galmap`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from galmap.core.failures import FailureLog
from galmap.core.io import read_shard, read_table, write_shard

log = logging.getLogger("galmap")


def preprocess_file(
    params: Mapping[str, Any],
    raw_path: str,
    out_path: str,
    failures_path: str,
    catalog_path: str | None = None,
    catalog: pd.DataFrame | None = None,
) -> None:
    """Preprocess one raw shard file into ``out_path``; failures to ``failures_path``.

    ``catalog_path``: the catalogue whose ``psfsize_<survey>_<band>`` give each galaxy's PSF
    (``preprocess.psf: catalogue``; without those columns, the nominal PSF). ``catalog``: that
    catalogue already read (it is then not read again from ``catalog_path``).
    """
    from galmap.preprocess.stamps import preprocess_shard

    failures = FailureLog("preprocess")
    shard = read_shard(raw_path)
    if params.get("psf", "catalogue") != "catalogue":
        catalog = None
    elif catalog is None and catalog_path:
        catalog = read_table(catalog_path)
    out = preprocess_shard(shard, params, failures, catalog=catalog)
    write_shard(out_path, out)
    failures.write(failures_path)
    log.info("preprocessed %d galaxies of %s; %d failures", len(shard), raw_path, len(failures))


def preprocess_files(
    params: Mapping[str, Mapping[str, Any]],
    raw_paths: Sequence[str],
    out_paths: Sequence[str],
    failures_paths: Sequence[str],
    catalog_path: str | None = None,
) -> None:
    """One shard of several surveys in one job: :func:`preprocess_file` for each survey, the catalogue read once.

    ``params``: each survey's settings (:func:`galmap.preprocess.settings.survey_params`), by survey name;
    the ``i``-th raw shard (of survey ``list(params)[i]``) goes to ``out_paths[i]``, its failures to
    ``failures_paths[i]``. The outputs are those of one :func:`preprocess_file` job per survey.
    """
    surveys = list(params)
    if not len(surveys) == len(raw_paths) == len(out_paths) == len(failures_paths):
        raise ValueError(
            f"preprocess: {len(surveys)} surveys ({', '.join(surveys)}) but {len(raw_paths)} raw shards, "
            f"{len(out_paths)} outputs and {len(failures_paths)} failure tables"
        )
    needs_catalog = any(p.get("psf", "catalogue") == "catalogue" for p in params.values())
    catalog = read_table(catalog_path) if catalog_path and needs_catalog else None
    for survey, raw, out, fail in zip(surveys, raw_paths, out_paths, failures_paths, strict=True):
        preprocess_file(params[survey], raw, out, fail, catalog_path=catalog_path, catalog=catalog)
