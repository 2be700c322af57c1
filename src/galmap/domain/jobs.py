"""The domain-adaptation jobs: target shards, DANN, distillation, predictions, metrics.

Files in, files out (the package's conventions: :mod:`galmap`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from galmap.core.failures import FailureLog
from galmap.core.io import read_shard, read_table, training_checkpoint, write_shard, write_table

log = logging.getLogger("galmap")


def domain_target_file(
    band_surveys: Mapping[str, str],
    source_path: str,
    component_paths: Mapping[str, str],
    out_path: str,
    failures_path: str,
) -> None:
    """The target survey's images of one shard on the source grid and scale (galmap.domain.adaptation.target_shard)."""
    from galmap.domain.adaptation import target_shard

    source = read_shard(source_path, datasets=())
    components = {name: read_shard(path, datasets=("flags",)) for name, path in component_paths.items()}
    failures = FailureLog("domain")
    shard = target_shard(source, components, band_surveys, failures)
    write_shard(out_path, shard)
    failures.write(failures_path)
    log.info("domain: %d target stamps (%s), %d failures", len(shard), "; ".join(shard.attrs["resampled_from"]),
             len(failures))  # fmt: skip


def domain_dann_file(
    params: Mapping[str, Any],
    seed: int,
    targets_path: str,
    classes_path: str,
    classifier_path: str,
    source_paths: Sequence[str],
    target_paths: Sequence[str],
    model_path: str,
    history_path: str,
    threads: int = 1,
) -> None:
    """Fine-tune the source CNN domain-adversarially on source labels and unlabelled target images."""
    import torch

    from galmap.classify.cnn import MorphologyCNN
    from galmap.classify.targets import class_names
    from galmap.core.device import pick_device
    from galmap.domain.adaptation import train_dann
    from galmap.nn.training import load_model, save_model

    torch.set_num_threads(max(1, threads))
    targets = read_table(targets_path)
    questions = list(class_names(read_table(classes_path)))
    classifier, meta = load_model(classifier_path, MorphologyCNN, pick_device(params.get("device", "auto")))
    if list(meta["questions"]) != questions:
        raise ValueError(f"{classifier_path} answers {meta['questions']}, {classes_path} lists {questions}")
    with training_checkpoint(model_path) as checkpoint:
        model, history = train_dann(
            classifier, source_paths, target_paths, targets, questions, params, seed, checkpoint
        )
        save_model(model_path, model, meta | {"adapted": "dann", "seed": seed})
        write_table(history_path, history)
    last = history.iloc[-1]
    log.info(
        "DANN: %d epochs; last epoch: source class loss %.4g, domain loss %.4g, domain accuracy %.3f",
        len(history), last["train_class_loss"], last["train_domain_loss"], last["train_domain_accuracy"],
    )  # fmt: skip


def domain_distill_file(
    params: Mapping[str, Any],
    seed: int,
    targets_path: str,
    classifier_path: str,
    source_paths: Sequence[str],
    target_paths: Sequence[str],
    model_path: str,
    history_path: str,
    threads: int = 1,
) -> None:
    """Distil the source CNN into an ensemble reading the target survey, on the galaxies outside the test split.

    Only the ``split`` column of the targets table is used (to leave out the
    test galaxies); no label reaches the training.
    """
    import torch

    from galmap.classify.cnn import MorphologyCNN
    from galmap.core.device import pick_device
    from galmap.domain.adaptation import held_out_galaxies, train_distill
    from galmap.nn.training import load_model, save_model

    torch.set_num_threads(max(1, threads))
    exclude = held_out_galaxies(read_table(targets_path)[["id", "split"]])
    classifier, meta = load_model(classifier_path, MorphologyCNN, pick_device(params.get("device", "auto")))
    with training_checkpoint(model_path) as checkpoint:
        model, history = train_distill(classifier, source_paths, target_paths, exclude, params, seed, checkpoint)
        save_model(model_path, model, meta | {"model": model.config(), "adapted": "distill", "seed": seed})
        write_table(history_path, history)
    last = history.iloc[-1]
    log.info(
        "distillation: %d students, %d epochs; last epoch: KL %.4g, feature MSE %.4g (monitor pairs: %.4g, %.4g)",
        model.config()["members"], len(history), last["train_kl"], last["train_feature_mse"],
        last.get("val_kl", float("nan")), last.get("val_feature_mse", float("nan")),
    )  # fmt: skip


def domain_predict_file(
    batch_size: int,
    targets_path: str,
    classes_path: str,
    classifier_path: str,
    dann_path: str,
    distill_path: str,
    reference_path: str | None,
    source_paths: Sequence[str],
    target_paths: Sequence[str],
    out_path: str,
    failures_path: str,
    threads: int = 1,
) -> None:
    """Predictions of every method (source-only, AdaBN, DANN, distillation) on the source and target images.

    ``classifier_path`` is the source CNN, ``dann_path`` its DANN fine-tuning,
    ``distill_path`` the ensemble distilled from it on the overlap and
    ``reference_path`` (optional) the target-supervised reference; AdaBN is the
    source CNN with its batch-norm statistics re-estimated on the unlabelled
    target images outside the test split.
    """
    import torch

    from galmap.classify.cnn import MorphologyCNN, predict, prediction_inputs
    from galmap.classify.targets import class_names
    from galmap.domain.adaptation import (
        METHODS,
        REFERENCE,
        CNNEnsemble,
        adapt_batchnorm,
        held_out_galaxies,
        target_batches,
    )
    from galmap.nn.training import load_model

    torch.set_num_threads(max(1, threads))
    targets = read_table(targets_path)
    questions = list(class_names(read_table(classes_path)))
    base, _ = load_model(classifier_path, MorphologyCNN)
    # each shard is read once and serves every model (reading and normalising it cost as much as the predictions)
    inputs = {
        domain: [prediction_inputs(p, targets, questions) for p in paths]
        for domain, paths in (("source", source_paths), ("target", target_paths))
    }
    models = {
        "source_only": base,
        "adabn": adapt_batchnorm(base, target_batches(inputs["target"], held_out_galaxies(targets), batch_size)),
        "dann": load_model(dann_path, MorphologyCNN)[0],
        "distill": load_model(distill_path, CNNEnsemble)[0],
    }
    if reference_path:
        models[REFERENCE] = load_model(reference_path, MorphologyCNN)[0]
    parts = []
    for method in [*METHODS, REFERENCE]:
        if method not in models:
            continue
        for domain in ("source", "target"):
            p = predict(models[method], inputs[domain], targets, questions, batch_size)
            parts.append(p.assign(method=method, domain=domain))
    preds = pd.concat(parts, ignore_index=True)
    failures = FailureLog("domain")
    for domain in ("source", "target"):
        seen = set(preds.loc[preds["domain"] == domain, "id"])
        for gid in sorted(set(targets["id"]) - seen):
            failures.add(gid, f"domain: no {domain} image of this galaxy")
    write_table(out_path, preds)
    failures.write(failures_path)


def domain_metrics_file(
    targets_path: str,
    classes_path: str,
    predictions_paths: Sequence[str],
    pairs: Sequence[str],
    metrics_path: str,
    summary_path: str,
    resamples: int = 1000,
    seed: int = 0,
) -> None:
    """``domain/metrics.csv`` and ``domain/summary.csv`` from the predictions of every method, for every pair.

    ``predictions_paths[k]`` holds pair ``pairs[k]``'s predictions. The metrics
    (:func:`galmap.domain.adaptation.domain_metrics`, with 68 % bootstrap
    intervals of ``resamples`` resamples seeded by ``seed``) get a ``pair``
    column; the summary is the seed's table per pair (source, target without and
    with the best adaptation, :func:`galmap.domain.adaptation.domain_summary`),
    the best method chosen on the validation split.
    """
    from galmap.classify.targets import class_names
    from galmap.domain.adaptation import best_method, domain_metrics, domain_summary

    if len(predictions_paths) != len(pairs):
        raise ValueError(f"domain: {len(predictions_paths)} prediction files for {len(pairs)} pairs ({pairs})")
    targets, classes = read_table(targets_path), class_names(read_table(classes_path))
    tables, summaries = [], []
    for pair, path in zip(pairs, predictions_paths, strict=True):
        preds = read_table(path)
        groups = {(m, d): g.drop(columns=["method", "domain"]) for (m, d), g in preds.groupby(["method", "domain"])}
        metrics = domain_metrics(groups, targets, classes, resamples, seed)
        tables.append(metrics.assign(pair=pair))
        summaries.append(domain_summary(metrics, best_method(groups)).assign(pair=pair))
    metrics = pd.concat(tables, ignore_index=True)
    metrics = metrics[["pair", *[c for c in metrics.columns if c != "pair"]]]
    summary = pd.concat(summaries, ignore_index=True)
    summary = summary[["pair", *[c for c in summary.columns if c != "pair"]]]
    write_table(metrics_path, metrics)
    write_table(summary_path, summary)
    cols = ["pair", "question", "method", "domain", "n_test", "accuracy", "change", "change_se", "recovered"]
    log.info("domain adaptation on the test split:\n%s", metrics[cols].round(3).to_string(index=False))
    log.info("summary (best method chosen on the validation split):\n%s", summary.round(3).to_string(index=False))
