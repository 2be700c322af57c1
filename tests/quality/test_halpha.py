"""Quality guard of the Hα stage on a small dedicated mock (400 galaxies in SDSS u, g, r, i, z and Hα, about
a minute on 2 cores): the U-Net's maps against the observed Hα maps, its total fluxes against the truth.

The default sky's stage (2,400 galaxies) is guarded on its outputs by ``tests/quality/test_run.py``;
this one runs in CI. Floors come from the values measured here with a stated margin; the same metrics
of the U-Net untrained (the broken stage) are checked to fall on the wrong side.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from galmap.core.config import load_config
from galmap.core.failures import FailureLog
from galmap.core.io import write_shard
from galmap.core.surveys import surveys_from_config
from galmap.images2images.halpha import evaluate, load_pairs, train_model
from galmap.mock.population import draw_population
from galmap.mock.render import render_shard
from galmap.nn.image2image import seeded_unet
from galmap.preprocess.stamps import preprocess_shard
from tests.conftest import REPO, SCHEMA

N_GALAXIES = 400
EPOCHS = 32  # the guard's own (its measured values are for 32; the default config trains 16 since issue 31)
AUGMENT = True  # likewise (the default config trains without augmentation since issue 31's validation)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def halpha(test_config, tmp_path_factory):
    """Held-out predictions (per galaxy) and metrics of the trained U-Net and of the same U-Net untrained."""
    cfg = test_config | {"mock": test_config["mock"] | {"n_galaxies": N_GALAXIES}}
    params = load_config(REPO / "config" / "config.yaml", SCHEMA)["halpha"] | {
        "epochs": EPOCHS, "patience": EPOCHS, "device": "cpu", "augment": AUGMENT,
    }  # fmt: skip
    truth = draw_population(cfg)
    surveys = surveys_from_config(cfg)
    shards = render_shard(truth, [surveys["sdss"], surveys["halpha"]], cfg["seed"], progress=False)
    folder = tmp_path_factory.mktemp("quality-halpha")
    paths = {}
    for name, shard in shards.items():
        settings = cfg["preprocess"] | cfg["preprocess"].get("surveys", {}).get(name, {})
        paths[name] = str(folder / f"{name}.h5")
        write_shard(paths[name], preprocess_shard(shard, settings, FailureLog("preprocess")))
    data = load_pairs([paths["sdss"]], [paths["halpha"]], params, cfg["seed"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the values measured below are for one thread
    try:
        model, _, _ = train_model(data, params, cfg["seed"], torch.device("cpu"))
        untrained = seeded_unet(cfg["seed"], torch.device("cpu"), data.x.shape[1], params["channels"]).eval()
        out = {}
        for name, net in (("trained", model), ("untrained", untrained)):
            metrics, pred, _ = evaluate(data, net, params, truth, FailureLog("halpha"), 1.0)
            out[name] = (metrics.set_index("subset"), pred)
    finally:
        torch.set_num_threads(threads)
    return out


def _within(pred: pd.DataFrame, dex: float) -> float:
    """Fraction of the detectable held-out galaxies whose predicted total flux is within ``dex`` of the truth's
    (a non-positive prediction counts as a miss)."""
    det = pred[pred["detectable"] & (pred["flux_true"] > 0)]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log10(det["flux_pred"] / det["flux_true"])
    return float(np.mean(np.abs(ratio.fillna(np.inf)) < dex))


def test_halpha_maps_correlate_with_the_observed_maps(halpha):
    """Median pixel correlation of predicted and observed Hα maps, detectable held-out galaxies (38 of 67).

    Measured 0.962; floor 0.90 (margin 0.06). Broken: the untrained U-Net's is 0.258.
    """
    floor = 0.90
    corr = halpha["trained"][0].loc["detectable", "pixel_corr_median"]
    assert corr > floor, f"Hα pixel correlation {corr:.3f} <= {floor} (measured 0.962)"
    assert halpha["untrained"][0].loc["detectable", "pixel_corr_median"] < floor


def test_halpha_total_flux_against_the_truth(halpha):
    """Fraction of the detectable held-out galaxies whose predicted Hα flux is within a factor 2 (0.3 dex) of the
    truth's ``flux_Ha``.

    Measured 0.47 (18 of 38); floor 0.30 (margin 0.17, two binomial standard errors). Broken: the untrained
    U-Net's is 0 (its fluxes are 2.7 dex low). (At this size the flux scatter, 0.37 dex, is far from the
    default sky's 0.148; that one is guarded on the full run.)
    """
    floor = 0.30
    frac = _within(halpha["trained"][1], 0.3)
    assert frac > floor, f"{frac:.2f} of the Hα fluxes within 0.3 dex <= {floor} (measured 0.47)"
    assert _within(halpha["untrained"][1], 0.3) < floor
