"""The mock survey's jobs: the population and truth table, the volunteers' labels, the rendering of a shard.

Files in, files out (the package's conventions: :mod:`galmap`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

from galmap.core.failures import FailureLog
from galmap.core.io import read_table, write_shard, write_table

log = logging.getLogger("galmap")


def shard_rows(n_total: int, shard_size: int, shard: int) -> slice:
    """Rows of the catalog that belong to shard number ``shard``."""
    start = shard * shard_size
    if start >= n_total:
        raise ValueError(f"shard {shard} is empty: the catalog has {n_total} rows of {shard_size} per shard")
    return slice(start, min(start + shard_size, n_total))


def make_mock_catalog(config: Mapping[str, Any], truth_path: str, catalog_path: str, processes: int = 1) -> None:
    """Draw the mock population; write the truth table and the id/ra/dec/shard catalog.

    The catalog also holds what a survey publishes of each galaxy's PSF: ``psfsize_<survey>_<band>``
    (:func:`galmap.mock.systematics.catalogue_psfsize`).

    The truth holds the physical answers (``true_<question>``) and, for the volunteers'
    survey ``config["label_survey"]``, the features' S/N and the visible answers with
    ``config["visibility"]["snr_threshold"]`` (``["featured_snr_threshold"]`` for the first question)
    (:func:`galmap.mock.visibility.add_visibility`, over ``processes`` worker processes).
    """
    from galmap.core.surveys import surveys_from_config
    from galmap.mock.population import draw_population, true_answers
    from galmap.mock.systematics import catalogue_psfsize
    from galmap.mock.visibility import add_visibility

    truth = draw_population(config)
    truth = pd.concat([truth, true_answers(truth)], axis=1)
    surveys = surveys_from_config(config)
    threshold = float(config["visibility"]["snr_threshold"])
    featured = config["visibility"].get("featured_snr_threshold")
    truth = add_visibility(truth, surveys, config["label_survey"], int(config["seed"]), threshold, processes, featured)
    catalog = truth[["id", "ra", "dec"]].copy()
    catalog["shard"] = truth["index"] // int(config["shard_size"])
    # what the survey publishes of each galaxy's PSF: its size with a measurement error (psfsize_<survey>_<band>)
    psf_cfg = (config["mock"].get("systematics") or {}).get("psf") or {}
    catalog = pd.concat([catalog, catalogue_psfsize(truth, surveys.values(), psf_cfg, int(config["seed"]))], axis=1)
    write_table(truth_path, truth)
    write_table(catalog_path, catalog)
    log.info("mock population: %d galaxies", len(truth))


def make_mock_labels(
    seed: int,
    volunteers: Mapping[str, Any],
    surveys: Mapping[str, Any],
    truth_path: str,
    labels_path: str,
    counts_path: str,
    visibility: Mapping[str, Any] | None = None,
) -> None:
    """The mock volunteers' labels of the truth table (:func:`galmap.mock.volunteers.make_labels`), class counts.

    ``surveys`` holds the configuration of the survey the volunteers look at
    (``volunteers["label_survey"]``; the config validation guarantees it exists).
    ``visibility`` (``mock.visibility``) turns on the perceptual volunteers, with
    ``volunteers["perception_scatter_dex"]``; ``volunteers["first_question"]`` holds the first question's
    volunteer errors (:data:`galmap.mock.volunteers.FIRST_QUESTION`).
    """
    from galmap.core.galaxyzoo import class_counts
    from galmap.core.surveys import Survey
    from galmap.mock.volunteers import make_labels

    name = volunteers["label_survey"]
    survey = Survey.from_config(name, surveys[name])
    perception = None
    if visibility is not None:
        perception = {
            "snr_threshold": visibility["snr_threshold"],
            "featured_snr_threshold": visibility.get("featured_snr_threshold"),
            "scatter_dex": volunteers["perception_scatter_dex"],
        }
    labels = make_labels(
        read_table(truth_path), survey, seed, volunteers["votes_mean"], perception, volunteers.get("first_question")
    )
    counts = class_counts(labels)
    write_table(labels_path, labels)
    write_table(counts_path, counts)
    log.info("mock volunteers: %d galaxies; class counts:\n%s", len(labels), counts.to_string(index=False))


def render_mock_shard(
    config: Mapping[str, Any], truth_path: str, shard: int, outputs: Mapping[str, str], failures_path: str
) -> None:
    """Render shard number ``shard`` of the truth table in every survey of ``outputs`` (name -> path)."""
    from galmap.core.surveys import surveys_from_config
    from galmap.mock.neighbours import NeighbourCounts
    from galmap.mock.render import render_shard

    truth = read_table(truth_path)
    rows = truth.iloc[shard_rows(len(truth), int(config["shard_size"]), shard)]
    surveys = surveys_from_config(config)
    failures = FailureLog("data")
    artefacts = config["mock"]["anomalies"]["artefact_survey"]
    systematics = config["mock"].get("systematics")
    shards = render_shard(
        rows,
        [surveys[name] for name in outputs],
        int(config["seed"]),
        failures,
        True,
        artefacts,
        systematics,
        NeighbourCounts.from_config(config["mock"].get("neighbours")),
    )
    for name, path in outputs.items():
        write_shard(path, shards[name])
    failures.write(failures_path)
    log.info("rendered %d galaxies in %s; %d failures", len(rows), ", ".join(outputs), len(failures))
