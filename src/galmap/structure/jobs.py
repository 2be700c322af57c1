"""The structure job: Sérsic fits or morphometry of one preprocessed shard.

Files in, files out (the package's conventions: :mod:`galmap`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from galmap.core.failures import FailureLog
from galmap.core.io import read_shard, write_table

log = logging.getLogger("galmap")


def structure_file(
    kind: str, params: Mapping[str, Any], images_path: str, out_path: str, failures_path: str, threads: int = 1
) -> None:
    """Sérsic fits (``kind="sersic"``) or morphometry (``"morphometry"``) of one preprocessed shard."""
    from galmap.structure.measure import fit_sersic_shard, morphometry_shard

    shard = read_shard(images_path)
    failures = FailureLog("structure")
    if kind == "sersic":
        import torch

        torch.set_num_threads(max(1, threads))
        table = fit_sersic_shard(shard, params, failures)
    elif kind == "morphometry":
        table = morphometry_shard(shard, params["morph_band"], failures, threads, params.get("morphometry", "batched"))
    else:
        raise ValueError(f"unknown structure measurement {kind!r}")
    write_table(out_path, table)
    failures.write(failures_path)
    log.info("%s of %d galaxies in %s; %d failures", kind, len(shard), images_path, len(failures))
