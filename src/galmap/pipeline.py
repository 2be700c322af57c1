"""The workflow's stages (data, preprocessing, structure) as functions of files: what the workflow's scripts call.

Each function reads its inputs, computes with the library, and writes its outputs
atomically, so the Snakemake scripts stay one call long.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from galmap.failures import FailureLog, gather_failures
from galmap.io import read_shard, read_table, write_shard, write_table
from galmap.labels import class_counts
from galmap.mock.population import draw_population, true_answers
from galmap.mock.render import render_shard
from galmap.mock.volunteers import make_labels
from galmap.preprocess import preprocess_shard
from galmap.surveys import surveys_from_config

log = logging.getLogger("galmap")


def shard_rows(n_total: int, shard_size: int, shard: int) -> slice:
    """Rows of the catalog that belong to shard number ``shard``."""
    start = shard * shard_size
    if start >= n_total:
        raise ValueError(f"shard {shard} is empty: the catalog has {n_total} rows of {shard_size} per shard")
    return slice(start, min(start + shard_size, n_total))


def make_mock_catalog(
    config: Mapping[str, Any], truth_path: str, labels_path: str, catalog_path: str, counts_path: str
) -> None:
    """Draw the mock population; write truth, labels, the id/ra/dec/shard catalog, class counts."""
    truth = draw_population(config)
    truth = pd.concat([truth, true_answers(truth)], axis=1)
    surveys = surveys_from_config(config)
    # the config validation (galmap.config.check_references) guarantees the survey exists
    labels = make_labels(truth, config, surveys[config["mock"]["volunteers"]["label_survey"]])
    catalog = truth[["id", "ra", "dec"]].copy()
    catalog["shard"] = truth["index"] // int(config["shard_size"])
    counts = class_counts(labels)
    write_table(truth_path, truth)
    write_table(labels_path, labels)
    write_table(catalog_path, catalog)
    write_table(counts_path, counts)
    log.info("mock population: %d galaxies; class counts:\n%s", len(truth), counts.to_string(index=False))


def render_mock_shard(
    config: Mapping[str, Any], truth_path: str, shard: int, outputs: Mapping[str, str], failures_path: str
) -> None:
    """Render shard number ``shard`` of the truth table in every survey of ``outputs`` (name -> path)."""
    truth = read_table(truth_path)
    rows = truth.iloc[shard_rows(len(truth), int(config["shard_size"]), shard)]
    surveys = surveys_from_config(config)
    failures = FailureLog("data")
    shards = render_shard(rows, [surveys[name] for name in outputs], int(config["seed"]), failures)
    for name, path in outputs.items():
        write_shard(path, shards[name])
    failures.write(failures_path)
    log.info("rendered %d galaxies in %s; %d failures", len(rows), ", ".join(outputs), len(failures))


def preprocess_file(params: Mapping[str, Any], raw_path: str, out_path: str, failures_path: str) -> None:
    """Preprocess one raw shard file into ``out_path``; failures to ``failures_path``."""
    failures = FailureLog("preprocess")
    shard = read_shard(raw_path)
    out = preprocess_shard(shard, params, failures)
    write_shard(out_path, out)
    failures.write(failures_path)
    log.info("preprocessed %d galaxies of %s; %d failures", len(shard), raw_path, len(failures))


def structure_file(
    kind: str, params: Mapping[str, Any], images_path: str, out_path: str, failures_path: str, threads: int = 1
) -> None:
    """Sérsic fits (``kind="sersic"``) or morphometry (``"morphometry"``) of one preprocessed shard."""
    from galmap.structure import fit_sersic_shard, morphometry_shard

    shard = read_shard(images_path)
    failures = FailureLog("structure")
    if kind == "sersic":
        import torch

        torch.set_num_threads(max(1, threads))
        table = fit_sersic_shard(shard, params, failures)
    elif kind == "morphometry":
        table = morphometry_shard(shard, params["morph_band"], failures, processes=threads)
    else:
        raise ValueError(f"unknown structure measurement {kind!r}")
    write_table(out_path, table)
    failures.write(failures_path)
    log.info("%s of %d galaxies in %s; %d failures", kind, len(shard), images_path, len(failures))


def gather_tables(paths: Sequence[str | Path], out_path: str) -> None:
    """Concatenate per-shard tables (Parquet) into one."""
    frames = [read_table(p) for p in paths]
    write_table(out_path, pd.concat(frames, ignore_index=True))


def gather_failure_tables(paths: Sequence[str | Path], out_path: str) -> None:
    """Concatenate per-shard ``failures`` tables into one stage table."""
    write_table(out_path, gather_failures(paths))
