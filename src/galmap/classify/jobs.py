"""The classification jobs: targets, the latent-space random forest, the image CNN, the metrics.

Files in, files out (the package's conventions: :mod:`galmap`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from galmap.core.failures import FailureLog
from galmap.core.io import read_table, training_checkpoint, write_table

log = logging.getLogger("galmap")


def classify_targets_file(
    params: Mapping[str, Any], seed: int, labels_path: str, targets_path: str, classes_path: str
) -> None:
    """The questions' classes and stratified train/val/test splits (``targets.parquet``, ``classes.csv``)."""
    from galmap.classify.targets import make_targets, spec_table, target_specs

    labels = read_table(labels_path)
    targets, specs = make_targets(labels, target_specs(params["questions"]), params, seed)
    write_table(targets_path, targets)
    write_table(classes_path, spec_table(specs))


def classify_rf_file(
    params: Mapping[str, Any],
    seed: int,
    targets_path: str,
    latents_path: str,
    out_path: str,
    failures_path: str,
    threads: int = 1,
) -> None:
    """Random forests on the latents, one per question; predictions of every used galaxy."""
    from galmap.classify.targets import random_forest_predictions

    targets = read_table(targets_path)
    preds, problems = random_forest_predictions(
        targets, read_table(latents_path), params["rf"], seed, threads, params["decision"]
    )
    failures = FailureLog("classify")
    for gid, why in problems:
        failures.add(gid, why)
    write_table(out_path, preds)
    failures.write(failures_path)
    log.info("random forests: %d predictions, %d failures", len(preds), len(failures))


def classify_cnn_file(
    params: Mapping[str, Any],
    seed: int,
    targets_path: str,
    classes_path: str,
    image_paths: Sequence[str],
    model_path: str,
    history_path: str,
    out_path: str,
    failures_path: str,
    threads: int = 1,
) -> None:
    """Train the multi-head CNN on the images; predictions of every used galaxy."""
    import torch

    from galmap.classify.cnn import predict, train_cnn
    from galmap.classify.targets import class_names
    from galmap.nn.training import save_model

    torch.set_num_threads(max(1, threads))
    targets = read_table(targets_path)
    names = class_names(read_table(classes_path))
    questions = list(names)
    with training_checkpoint(model_path) as checkpoint:
        model, history, meta = train_cnn(
            image_paths, targets, questions, [len(names[q]) for q in questions], params["cnn"], seed, checkpoint
        )
        save_model(model_path, model, meta)
        write_table(history_path, history)
    preds = predict(model, image_paths, targets, questions, decision=params["decision"])
    failures = FailureLog("classify")
    seen = set(zip(preds["id"], preds["question"], strict=True))
    for gid, q in zip(targets["id"], targets["question"], strict=True):
        if (gid, q) not in seen:
            failures.add(gid, f"classify ({q}): no image of this galaxy in the {meta['survey']} shards")
    write_table(out_path, preds)
    failures.write(failures_path)
    log.info("CNN: %d epochs, %d predictions, %d failures", len(history), len(preds), len(failures))


def classify_metrics_file(
    targets_path: str,
    classes_path: str,
    prediction_paths: Mapping[str, str],
    metrics_path: str,
    confusion_path: str,
    comparison_path: str | None = None,
    seed: int = 0,
) -> None:
    """``metrics.csv`` and ``confusion.csv`` on the test split, for every model; ``comparison.csv``:
    ``cnn_image − rf_latent`` per question with its paired bootstrap interval (:func:`compare_models`)."""
    from galmap.classify.targets import class_names, compare_models, score_predictions

    targets = read_table(targets_path)
    preds = {model: read_table(p) for model, p in prediction_paths.items()}
    metrics, confusion = score_predictions(preds, targets, class_names(read_table(classes_path)))
    write_table(metrics_path, metrics)
    write_table(confusion_path, confusion)
    cols = ["question", "model", "n_test", "accuracy", "balanced_accuracy", "chance_accuracy", "f1_macro"]
    log.info("classification on the test split:\n%s", metrics[cols].to_string(index=False))
    if comparison_path is not None:
        comparison = compare_models(preds, "rf_latent", "cnn_image", seed)
        write_table(comparison_path, comparison)
        log.info("CNN - forest on the test split (paired bootstrap 68 %%):\n%s", comparison.to_string(index=False))
