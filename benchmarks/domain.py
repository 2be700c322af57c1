"""What does each domain adaptation cost? One epoch of each, against one epoch of the source CNN, timed in one run.

On the same galaxies, written as a source and a target shard (as the pipeline
reads them), with the default config's settings; each training is timed through
its own function (reading the shards, one epoch, its validation pass):

* ``cnn_epoch``: one training epoch of the source CNN (``classify.cnn``) on the
  labelled source images (the baseline);
* ``adabn``: re-estimating the batch-norm statistics on every target image;
* ``dann_epoch``: one epoch of domain-adversarial fine-tuning (``domain.dann``:
  each source batch with as many target images);
* ``teacher``: the source CNN's orientation-averaged view of every source image
  (8 forward passes each), which distillation computes once per pair;
* ``distill_epoch``: one epoch of cross-survey distillation (``domain.distill``:
  ``members`` students) after the teacher's pass.

The images are random (only the cost is measured; ``results/domain/metrics.csv``
has the accuracies). Usage::

    python benchmarks/domain.py [--n 1000] [--size 64] [--threads 1]

The last line is machine-readable: ``RESULT dann_epoch_over_cnn=... distill_epoch_over_cnn=...``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from galmap.classify.cnn import train_cnn
from galmap.core.config import load_config
from galmap.core.galaxyzoo import QUESTIONS
from galmap.core.io import Shard, write_shard
from galmap.domain.adaptation import adapt_batchnorm, target_batches, teacher_targets, train_dann, train_distill

REPO = Path(__file__).resolve().parents[1]


def _shard(path: Path, rng: np.random.Generator, ids: np.ndarray, size: int, survey: str) -> None:
    images = rng.normal(0.0, 1.0, (len(ids), 3, size, size)).astype(np.float32)
    attrs = {"survey": survey, "bands": ["g", "r", "z"], "pixscale_arcsec": 0.262, "psf_fwhm_arcsec": [1.4] * 3,
             "norm_softening": [1.0] * 3, "preprocessed": True}  # fmt: skip
    write_shard(path, Shard(images, np.ones_like(images), ids, attrs), compression=None)


def _timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="galaxies (all in the training split)")
    parser.add_argument("--size", type=int, default=64, help="stamp side (pixels)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(REPO / "config" / "config.yaml", REPO / "workflow" / "schemas" / "config.schema.yaml")
    rng = np.random.default_rng(0)
    ids = np.array([f"g{i:05d}" for i in range(args.n)], dtype=object)
    questions = [q.name for q in QUESTIONS]
    n_classes = [len(q.classes) for q in QUESTIONS]
    split = np.where(np.arange(args.n) % 10 == 0, "val", "train")  # no test galaxy: every pair is used
    targets = pd.concat(
        [pd.DataFrame({"id": ids, "question": q, "class": rng.integers(0, k, args.n), "split": split})
         for q, k in zip(questions, n_classes, strict=True)],
        ignore_index=True,
    )  # fmt: skip
    cnn = dict(cfg["classify"]["cnn"]) | {"max_epochs": 1, "patience": 1, "device": "cpu"}
    dann = dict(cfg["domain"]["dann"]) | {"max_epochs": 1, "device": "cpu"}
    distill = dict(cfg["domain"]["distill"]) | {"epochs": 1, "device": "cpu"}
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "source.h5", Path(tmp) / "target.h5"
        _shard(source, rng, ids, args.size, "decals")
        _shard(target, rng, ids, args.size, "bass+mzls")
        model, _, _ = train_cnn([source], targets, questions, n_classes, cnn, 0, progress=False)  # warm-up
        t_cnn, _ = _timed(lambda: train_cnn([source], targets, questions, n_classes, cnn, 0, progress=False))
        batches = list(target_batches([target], set(), int(cfg["domain"]["batch_size"])))
        t_adabn, _ = _timed(lambda: adapt_batchnorm(model, batches))
        t_dann, _ = _timed(lambda: train_dann(model, [source], [target], targets, questions, dann, 0, progress=False))
        x = torch.from_numpy(np.random.default_rng(1).normal(size=(args.n, 3, args.size, args.size)).astype("f4"))
        t_teacher, _ = _timed(lambda: teacher_targets(model, x, float(distill["temperature"])))
        t_all, _ = _timed(lambda: train_distill(model, [source], [target], set(), distill, 0, progress=False))
    t_distill = t_all - t_teacher  # the epoch itself (train_distill computes the teacher's view first)

    print(f"{args.n} galaxies, {args.size}x{args.size}x3 images, {args.threads} thread(s)")
    print(f"cnn_epoch     (source CNN, one epoch):            {t_cnn:7.2f} s   1.00")
    print(f"adabn         (batch-norm statistics, one pass):  {t_adabn:7.2f} s   {t_adabn / t_cnn:5.2f}x")
    print(f"dann_epoch    (one epoch, source + target):       {t_dann:7.2f} s   {t_dann / t_cnn:5.2f}x")
    print(f"teacher       (8 orientations of every pair):     {t_teacher:7.2f} s   {t_teacher / t_cnn:5.2f}x")
    label = f"({distill['members']} students, one epoch):"
    print(f"distill_epoch {label:36s}{t_distill:7.2f} s   {t_distill / t_cnn:5.2f}x")
    total = {
        "cnn": int(cfg["classify"]["cnn"]["max_epochs"]) * t_cnn,
        "dann": int(cfg["domain"]["dann"]["max_epochs"]) * t_dann,
        "distill": t_teacher + int(cfg["domain"]["distill"]["epochs"]) * t_distill,
    }
    print(
        "default schedules: " + ", ".join(f"{k} {v:.1f} s ({v / total['cnn']:.2f}x the CNN)" for k, v in total.items())
    )
    print(f"RESULT dann_epoch_over_cnn={t_dann / t_cnn:.3f} distill_epoch_over_cnn={t_distill / t_cnn:.3f} "
          f"teacher_over_cnn={t_teacher / t_cnn:.3f} adabn_over_cnn={t_adabn / t_cnn:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
