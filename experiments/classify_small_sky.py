"""Is there a classification signal on the quality guards' small sky? (issue 31; docs/testing.md)

The guards' 400-galaxy DECaLS sky (``tests/quality/conftest.py``: the test config's mock, a VAE of 8
latents trained 25 epochs), labelled by the mock volunteers and split by the classify stage; the
random forest on the latents (200 trees) and the image CNN (``[8, 16, 32]``, 15 epochs) trained by
the stage's functions. Printed per question: test accuracy minus the training labels' majority-class
rate (``tests/quality/test_run.py``'s metric) and the number of test galaxies, for the trained stage and
for broken ones (forest on shuffled training labels or on an untrained VAE's latents; CNN untrained).

    PYTHONPATH=src:. OMP_NUM_THREADS=1 nice -n 15 python experiments/classify_small_sky.py [--n 400] --work runs/cls
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from galmap.classify.cnn import MorphologyCNN, predict, train_cnn
from galmap.classify.targets import class_names, make_targets, random_forest_predictions, spec_table, target_specs
from galmap.core.config import load_config
from galmap.core.failures import FailureLog
from galmap.core.io import write_shard
from galmap.core.surveys import surveys_from_config
from galmap.latent.vae import ConvVAE, encode, loader, train_vae
from galmap.mock.population import draw_population
from galmap.mock.render import render_shard
from galmap.mock.volunteers import make_labels
from galmap.preprocess.stamps import preprocess_shard

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--cnn-epochs", type=int, default=15)
    ap.add_argument("--work", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    cfg = load_config(REPO / "config/test.yaml", REPO / "workflow/schemas/config.schema.yaml")
    cfg = cfg | {"mock": cfg["mock"] | {"n_galaxies": args.n}}
    truth = draw_population(cfg)
    decals = surveys_from_config(cfg)["decals"]
    raw = render_shard(truth, [decals], cfg["seed"], FailureLog("data"), progress=False)["decals"]
    path = args.work / f"decals{args.n}.h5"
    write_shard(path, preprocess_shard(raw, cfg["preprocess"], FailureLog("preprocess")))
    params = cfg["vae"] | {"max_epochs": 25, "latent_dim": 8, "device": "cpu"}
    model, _, meta = train_vae([path], params, 8, cfg["seed"], progress=False)
    lat = encode(model, loader(params, cfg["seed"])(path))
    torch.manual_seed(0)
    lat_untrained = encode(ConvVAE(**meta["model"]).eval(), loader(params, cfg["seed"])(path))
    vol, cl = cfg["mock"]["volunteers"], cfg["classify"]
    labels = make_labels(truth, decals, cfg["seed"], vol["votes_mean"])
    targets, specs = make_targets(labels, target_specs(cl["questions"]), cl, cfg["seed"])
    names = class_names(spec_table(specs))
    qs = list(names)
    print(targets.groupby(["question", "split"]).size().unstack())

    def margins(preds):
        out = {}
        for q in qs:
            t = targets[targets["question"] == q].set_index("id")
            test = preds[(preds["question"] == q) & (preds["split"] == "test")]
            true = t.loc[test["id"], "class"].to_numpy()
            majority = t.loc[t["split"] == "train", "class"].value_counts().idxmax()
            out[q] = (round(float(np.mean(test["pred_class"].to_numpy() == true) - np.mean(true == majority)), 3),
                      len(test))  # fmt: skip
        return out

    rf = cl["rf"] | {"n_estimators": 200}
    print("forest", margins(random_forest_predictions(targets, lat, rf, cfg["seed"])[0]), flush=True)
    shuffled = targets.copy()
    rng = np.random.default_rng(0)
    for _, idx in shuffled[shuffled["split"] == "train"].groupby("question").groups.items():
        shuffled.loc[idx, "class"] = rng.permutation(shuffled.loc[idx, "class"].to_numpy())
    print("forest, shuffled labels", margins(random_forest_predictions(shuffled, lat, rf, cfg["seed"])[0]))
    print("forest, untrained VAE", margins(random_forest_predictions(targets, lat_untrained, rf, cfg["seed"])[0]))
    cnn = cl["cnn"] | {"max_epochs": args.cnn_epochs, "patience": args.cnn_epochs, "channels": [8, 16, 32],
                       "batch_size": 32, "device": "cpu"}  # fmt: skip
    t0 = time.process_time()
    net, _, cmeta = train_cnn([path], targets, qs, [len(names[q]) for q in qs], cnn, cfg["seed"], progress=False)
    print(f"CNN ({time.process_time() - t0:.0f} CPU-s)", margins(predict(net, [path], targets, qs)), flush=True)
    torch.manual_seed(0)
    print("CNN untrained", margins(predict(MorphologyCNN(**cmeta["model"]).eval(), [path], targets, qs)))


if __name__ == "__main__":
    main()
