"""Quality guards on a small dedicated mock (400 galaxies in DECaLS, about a minute on 2 cores).

The test config's run (24 galaxies, 1-2 epochs) is too small for a floor that noise does not
flip, so the VAE and the outlier scores are guarded here, on a sky of their own, against the
mock's truth. Every floor comes from a measured value with a stated margin; each test also
computes the same metric for a broken stage (an untrained encoder, shuffled truth or scores)
and checks that it falls below the floor, so the floor does separate working from broken.

The classification stage is guarded on the same sky in ``tests/quality/test_classify.py`` (against the
truth's answers, not the simulated volunteers' votes, which carry no signal at this size).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from galmap.latent.outliers import evaluate, latent_columns, score

pytestmark = pytest.mark.slow


def _probe_r2(latents: pd.DataFrame, truth: pd.DataFrame, column: str, shuffle: bool = False) -> float:
    """R^2 on the VAE's held-out (test) galaxies of a ridge regression of a truth column on the latents,
    fitted on the other galaxies."""
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score

    x = latents[latent_columns(latents)].to_numpy()
    y = truth.set_index("id").loc[latents["id"], column].to_numpy(float)
    if shuffle:
        y = np.random.default_rng(0).permutation(y)
    test = (latents["split"] == "test").to_numpy()
    probe = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(x[~test], y[~test])
    return float(r2_score(y[test], probe.predict(x[test])))


def test_vae_latents_predict_the_true_magnitude(sky, latents):
    """A linear probe of the true r magnitude from the latents, on 106 held-out galaxies.

    Measured R^2 0.825 (rms error 0.26 mag); floor 0.78 (margin 0.045). Broken: the same architecture
    untrained gives 0.703 (a random encoder still sees how bright a galaxy is), the truth shuffled about 0.
    Since the magnitudes follow the number counts (issue 27) they spread less (std 0.62 mag instead of 0.95
    for uniform r 14.5-17.8), so the same rms error (0.25 mag before) is a lower R^2 (0.929 before, floor 0.88).
    The true g-r, bulge fraction and inclination are not guarded: at this size the trained
    latents predict them no better than untrained ones (R^2 < 0.15 for both).
    """
    _, truth, _ = sky
    trained, untrained = latents
    floor = 0.78
    r2 = _probe_r2(trained, truth, "mag_r")
    assert r2 > floor, f"probe R^2 of mag_r {r2:.3f} <= {floor} (measured 0.825)"
    assert _probe_r2(untrained, truth, "mag_r") < floor
    assert _probe_r2(trained, truth, "mag_r", shuffle=True) < floor


def test_vae_reconstructs_held_out_galaxies(latents):
    """Median chi^2/nu of the held-out galaxies' reconstructions against their own pixels and inverse variance.

    Measured 6.1 (the test config's tiny VAE); ceiling 9 (margin 1.5x). Broken: the untrained
    decoder's is 258.
    """
    trained, untrained = latents
    ceiling = 9.0
    test = trained["split"] == "test"
    chi2 = float(trained.loc[test, "chi2_nu"].median())
    assert chi2 < ceiling, f"held-out median chi2/nu {chi2:.2f} >= {ceiling} (measured 6.1)"
    assert float(untrained.loc[test, "chi2_nu"].median()) > ceiling


def test_outlier_scores_find_the_injected_anomalies(sky, latents):
    """ROC area of the outlier score against the truth's injected anomalies (50 of 400 galaxies).

    Measured 0.800 on the 48-px stamps of the former, smaller galaxies; 0.756 on the 64-px stamps with the
    documented sizes (issue 27). Floor 0.74 (set at 0.800 minus about 1.7 standard errors of an area on 50
    against 350, kept). Broken: the scores of the untrained VAE give 0.635 (0.631 before), shuffled 0.570.
    """
    cfg, truth, _ = sky
    trained, untrained = latents
    anomaly = truth.set_index("id")["anomaly"]
    floor = 0.74

    def auc(table: pd.DataFrame, shuffle: bool = False) -> float:
        scored = score(table, float(cfg["outliers"]["threshold_sigma"]), cfg["seed"])
        if shuffle:
            scored["outlier_score"] = np.random.default_rng(0).permutation(scored["outlier_score"].to_numpy())
        metrics, _ = evaluate(scored, anomaly)
        return float(metrics.set_index("kind").loc["all", "roc_auc"])

    measured, broken, shuffled = auc(trained), auc(untrained), auc(trained, shuffle=True)
    print(f"outlier ROC area: trained {measured:.3f}, untrained {broken:.3f}, shuffled {shuffled:.3f}")
    assert measured > floor, f"outlier ROC area {measured:.3f} <= {floor} (measured 0.756; untrained {broken:.3f})"
    assert broken < floor and shuffled < floor
