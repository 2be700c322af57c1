"""What does classifying from the latents save? Random forests on latents vs the image CNN, timed in one run.

Times, on the same galaxies and the same nine-question label set:

* ``rf_latent``: fitting one random forest per question (the default ``classify.rf``)
  on ``--latent-dim`` latents and predicting every galaxy (the baseline);
* ``cnn_epoch``: one training epoch of the default multi-head CNN on the images;
* ``cnn_predict``: predicting every galaxy with the CNN.

The data are synthetic (random images and latents; each question's class is the
largest of a few latents plus as much noise, so the forests learn something, as
on real labels): only the cost is measured, not the accuracy (the pipeline's
``results/classify/metrics.csv`` has that). Usage::

    python benchmarks/classify.py [--n 1500] [--size 64] [--threads 1]

The last line is machine-readable: ``RESULT cnn_epoch_over_rf=... cnn_predict_over_rf=...``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from galmap.classify.cnn import MorphologyCNN, make_step
from galmap.classify.targets import random_forest_predictions
from galmap.core.config import load_config
from galmap.core.galaxyzoo import QUESTIONS
from galmap.nn.training import seeded_generator

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1500, help="galaxies")
    parser.add_argument("--size", type=int, default=64, help="stamp side (pixels)")
    parser.add_argument("--latent-dim", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(REPO / "config" / "config.yaml", REPO / "workflow" / "schemas" / "config.schema.yaml")
    rng = np.random.default_rng(0)
    ids = np.array([f"g{i:05d}" for i in range(args.n)], dtype=object)
    n_classes = [len(q.classes) for q in QUESTIONS]
    z = rng.normal(size=(args.n, args.latent_dim))
    y = np.stack([np.argmax(z[:, :k] + rng.normal(size=(args.n, k)), axis=1) for k in n_classes], axis=1)
    targets = pd.concat(
        [
            pd.DataFrame({"id": ids, "question": q.name, "class": y[:, j], "split": "train"})
            for j, q in enumerate(QUESTIONS)
        ],
        ignore_index=True,
    )
    latents = pd.DataFrame(
        rng.normal(size=(args.n, args.latent_dim)), columns=[f"mu_{k}" for k in range(args.latent_dim)]
    )
    latents.insert(0, "id", ids)

    t0 = time.perf_counter()
    random_forest_predictions(targets, latents, cfg["classify"]["rf"], 0, threads=args.threads)
    t_rf = time.perf_counter() - t0

    cnn = cfg["classify"]["cnn"]
    model = MorphologyCNN(3, n_classes, cnn["channels"], cnn["dropout"])
    opt = torch.optim.Adam(model.parameters(), lr=cnn["learning_rate"])
    step = make_step(bool(cnn["augment"]))
    x = torch.from_numpy(rng.normal(size=(args.n, 3, args.size, args.size)).astype(np.float32))
    yt = torch.from_numpy(y)
    gen = seeded_generator(0)
    bs = int(cnn["batch_size"])
    model.train()
    t0 = time.perf_counter()
    for start in range(0, args.n, bs):
        out = step(model, (x[start : start + bs], None, yt[start : start + bs]), 0, gen, True)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    t_epoch = time.perf_counter() - t0
    model.eval()
    t0 = time.perf_counter()
    with torch.no_grad():
        for start in range(0, args.n, 256):
            model(x[start : start + 256])
    t_pred = time.perf_counter() - t0

    print(f"{args.n} galaxies, {args.size}x{args.size}x3 images, {args.latent_dim} latents, {args.threads} thread(s)")
    print(f"rf_latent   (9 forests, fit + predict): {t_rf:7.2f} s   1.00")
    print(f"cnn_epoch   (one training epoch):       {t_epoch:7.2f} s   {t_epoch / t_rf:5.2f}x the forests")
    print(f"cnn_predict (every galaxy):             {t_pred:7.2f} s   {t_pred / t_rf:5.2f}x the forests")
    print(f"(the default CNN trains {cnn['max_epochs']} epochs: {cnn['max_epochs'] * t_epoch / t_rf:.1f}x the forests)")
    print(f"RESULT cnn_epoch_over_rf={t_epoch / t_rf:.3f} cnn_predict_over_rf={t_pred / t_rf:.3f}")


if __name__ == "__main__":
    main()
