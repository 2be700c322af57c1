"""Is there a classification signal on the quality guards' small sky, and why was there none? (issue 31;
docs/testing.md)

The guards' 400-galaxy DECaLS sky (``tests/quality/conftest.py``: the test config's mock through the nominal
PSF, a VAE of 8 latents trained 25 epochs). Printed:

1. per question, the simulated volunteers' labels as the stage makes them with the test config's cuts
   (``min_votes: 3``): how many galaxies get one, how many are asked the question in the truth, and how often
   the label's class is the truth's;
2. per split seed and question, test balanced accuracy minus chance (1 / classes present) of the forest on the
   latents and of the CNN on the images, trained on the truth's answers (the guard's labels,
   ``tests/quality/test_classify.py``'s functions) and on the same labels shuffled; then the mean and the
   standard deviation over the splits of the guard's two numbers (forest: mean of how-rounded and
   disk-edge-on; CNN: mean of all questions).

    PYTHONPATH=src:. OMP_NUM_THREADS=1 nice -n 15 python experiments/classify_small_sky.py --work runs/cls \\
        [--split-seeds 100 101 102 103 104] [--cnn-splits 3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from galmap.classify.targets import make_targets, target_specs
from galmap.core.config import load_config
from galmap.core.failures import FailureLog
from galmap.core.io import write_shard
from galmap.core.surveys import surveys_from_config
from galmap.latent.vae import encode, loader, train_vae
from galmap.mock.population import draw_population
from galmap.mock.render import render_shard
from galmap.mock.volunteers import make_labels
from galmap.preprocess.stamps import preprocess_shard
from tests.quality.conftest import LATENT_DIM, VAE_EPOCHS
from tests.quality.test_classify import (
    FOREST_QUESTIONS,
    TEST_FRACTION,
    cnn_margins,
    forest_margins,
    stratified_splits,
    truth_labels,
)

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--split-seeds", type=int, nargs="+", default=[100, 101, 102, 103, 104])
    ap.add_argument("--cnn-splits", type=int, default=3, help="train the CNNs on the first this many splits")
    ap.add_argument("--work", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    schema = REPO / "workflow/schemas/config.schema.yaml"
    cfg = load_config(REPO / "config/test.yaml", schema)
    systematics = dict(cfg["mock"]["systematics"]) | {"psf": {"enabled": False}}
    cfg = cfg | {"mock": cfg["mock"] | {"n_galaxies": args.n, "systematics": systematics}}
    truth = draw_population(cfg)
    decals = surveys_from_config(cfg)["decals"]
    raw = render_shard(truth, [decals], cfg["seed"], FailureLog("data"), progress=False)["decals"]
    path = args.work / f"decals{args.n}.h5"
    write_shard(path, preprocess_shard(raw, cfg["preprocess"], FailureLog("preprocess")))
    params = cfg["vae"] | {"max_epochs": VAE_EPOCHS, "latent_dim": LATENT_DIM, "device": "cpu"}
    model, _, _ = train_vae([path], params, LATENT_DIM, cfg["seed"], progress=False)
    latents = encode(model.eval(), loader(params, cfg["seed"])(path))

    # 1. the volunteers' labels against the truth's answers
    default = load_config(REPO / "config/config.yaml", schema)["classify"]
    questions = list(default["questions"])
    labels = make_labels(truth, decals, cfg["seed"], cfg["mock"]["volunteers"]["votes_mean"])
    votes, specs = make_targets(labels, target_specs(questions), cfg["classify"], cfg["seed"])
    true, true_specs = truth_labels(truth, questions)
    true = true.set_index("id")
    rows = []
    for spec in specs:
        t = votes[votes["question"] == spec.name]
        column = true[f"true_class_{spec.name}"]
        agree = np.mean(np.array(spec.classes)[t["class"]] == column.loc[t["id"]].to_numpy())
        rows.append({"question": spec.name, "labelled": len(t), "asked_in_truth": int((column != "").sum()),
                     "label_is_truth": round(float(agree), 3)})  # fmt: skip
    print("volunteers' labels (test config's cuts):\n" + pd.DataFrame(rows).to_string(index=False), flush=True)

    # 2. the guard's measure on other splits
    cl = default | {"val_fraction": 0.1, "test_fraction": TEST_FRACTION}
    splits = stratified_splits(true.reset_index(), true_specs, cl, args.split_seeds)
    per_split = []
    for k, (split, seed) in enumerate(zip(splits, args.split_seeds, strict=True)):
        parts = {f"forest {n}": v for n, v in forest_margins([split], latents, cl, [seed]).items() if n != "constant"}
        if k < args.cnn_splits:
            parts |= {f"cnn {n}": v for n, v in cnn_margins([split], str(path), cl, [seed]).items()}
        table = pd.DataFrame(parts)
        print(f"split seed {seed}:\n{table.round(3).to_string()}", flush=True)
        guard = {f"{m}: mean of {', '.join(FOREST_QUESTIONS)}": table[m].loc[FOREST_QUESTIONS].mean()
                 for m in table if m.startswith("forest")}  # fmt: skip
        guard |= {f"{m}: mean of all": table[m].mean() for m in table if m.startswith("cnn")}
        per_split.append(pd.Series(guard, name=seed))
    summary = pd.DataFrame(per_split)
    print(summary.round(3).to_string())
    print(pd.DataFrame({"mean": summary.mean(), "std": summary.std(), "n": summary.count()}).round(3).to_string())


if __name__ == "__main__":
    main()
