"""Outlier scores, flags and their validation; the mock's injected anomalies."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from galmap.latent.outliers import evaluate, roc, score, upper_z
from galmap.mock.anomalies import INSTRUMENTAL, KINDS
from galmap.mock.population import draw_population
from galmap.mock.render import render_shard


def _latents(n: int = 400, k: int = 6, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(n, k))
    chi2 = 10 ** rng.normal(0.2, 0.05, n)
    table = pd.DataFrame(mu, columns=[f"mu_{i}" for i in range(k)])
    table.insert(0, "id", [f"g{i}" for i in range(n)])
    table["chi2_nu"] = chi2
    return table


def test_an_injected_artefact_is_flagged():
    """A galaxy far out in latent space and one badly reconstructed are flagged; few others are."""
    table = _latents()
    table.loc[3, [f"mu_{i}" for i in range(6)]] = 12.0  # far from the population
    table.loc[7, "chi2_nu"] = 40.0  # a trail the decoder cannot reproduce
    out = score(table, threshold_sigma=4.0, seed=1)
    assert out.loc[3, "is_outlier"] and out.loc[3, "mahalanobis_sigma"] > 4
    assert out.loc[7, "is_outlier"] and out.loc[7, "recon_sigma"] > 4
    assert out["is_outlier"].sum() <= 6
    anomaly = pd.Series("none", index=table["id"])
    anomaly[["g3", "g7"]] = ["lens_arc", "satellite_trail"]
    metrics, curve = evaluate(out, anomaly)
    metrics = metrics.set_index("kind")
    assert metrics.loc["all", "flagged_fraction"] == 1.0
    assert metrics.loc["none", "flagged_fraction"] < 0.02
    assert metrics.loc["all", "roc_auc"] == pytest.approx(1.0)
    # the curve and its area against scikit-learn's, on the same scores and truth
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(table["id"].isin(["g3", "g7"]), out["outlier_score"], drop_intermediate=False)
    np.testing.assert_allclose(curve[["fpr", "tpr"]].to_numpy(), np.c_[fpr, tpr])
    assert roc_auc_score(table["id"].isin(["g3", "g7"]), out["outlier_score"]) == pytest.approx(1.0)


def _band_latents(n: int = 2000, k: int = 6, seed: int = 0) -> pd.DataFrame:
    """Latents and per-band chi2/nu of a population of normal galaxies (log-normal chi2, 0.05 dex per band)."""
    rng = np.random.default_rng(seed)
    table = _latents(n, k, seed)
    per = 10 ** rng.normal(0.2, 0.05, (n, 3))
    for j, band in enumerate("grz"):
        table[f"chi2_nu_{band}"] = per[:, j]
    table["chi2_nu"] = per.mean(axis=1)  # equal pixel counts per band
    return table


def test_a_one_band_artefact_is_flagged_per_band_but_diluted_in_all_bands():
    """A residual at 5 sigma of one band's spread is caught by that band's score; averaged with
    the two clean bands it stays under 4 sigma of the all-band chi2/nu (this is why per_band exists)."""
    table = _band_latents()
    table.loc[9, ["chi2_nu_g", "chi2_nu_r", "chi2_nu_z"]] = 10 ** np.array([0.2 + 5 * 0.05, 0.2, 0.2])
    table.loc[9, "chi2_nu"] = table.loc[9, ["chi2_nu_g", "chi2_nu_r", "chi2_nu_z"]].mean()
    per = score(table, per_band=True)
    whole = score(table, per_band=False)
    assert per.loc[9, "is_outlier"] and per.loc[9, "recon_band"] == "g" and per.loc[9, "recon_sigma"] > 4
    assert not whole.loc[9, "is_outlier"] and whole.loc[9, "recon_sigma"] < 4
    assert {"recon_sigma_g", "recon_sigma_r", "recon_sigma_z"} <= set(per.columns)
    assert (whole["recon_band"] == "all").all()


def test_scores_are_calibrated_on_normal_populations():
    """Without anomalies, 4 sigma flags (almost) nothing: Gaussian latents and log-normal chi2 per band,
    and a right-skewed chi2 law where the symmetric MAD flags far more."""
    table = _band_latents(n=4000, seed=3)
    out = score(table, threshold_sigma=4.0, seed=0)
    assert out["is_outlier"].mean() < 0.002
    # skewed: log chi2 = 0.2 + 0.05 |N| on the upper side, 0.02 |N| on the lower side
    rng = np.random.default_rng(4)
    g = rng.normal(size=20000)
    logc = 0.2 + np.where(g > 0, 0.05, 0.02) * g
    ok = np.ones(len(g), bool)
    assert np.mean(upper_z(logc, ok) > 4) < 1e-3
    sym = (logc - np.median(logc)) / (1.4826 * np.median(np.abs(logc - np.median(logc))))
    assert np.mean(sym > 4) > 10 * max(np.mean(upper_z(logc, ok) > 4), 1e-4)


def test_the_encoder_gives_per_band_chi2_that_see_a_one_band_column():
    """``chi2_nu_<band>`` averages to ``chi2_nu`` (pixel-weighted) and a column added to one band
    raises that band's chi2/nu only."""
    import torch

    from galmap.latent.vae import ConvVAE, encode
    from galmap.nn.inputs import ShardInputs

    torch.manual_seed(0)
    model = ConvVAE(3, 16, 2, [4, 8]).eval()
    gen = torch.Generator().manual_seed(1)
    x = 0.1 * torch.randn(4, 3, 16, 16, generator=gen)
    w = torch.ones_like(x)
    w[1, 2, :5] = 0.0  # a masked strip in one band
    attrs = {"norm_softening": [1.0, 1.0, 1.0], "bands": ["g", "r", "z"]}
    ids, split = np.array(["a", "b", "c", "d"], dtype=object), np.array(["test"] * 4, dtype=object)
    clean = encode(model, ShardInputs(x, w, ids, split, attrs))
    npix = (w > 0).sum((2, 3)).numpy()
    per = clean[["chi2_nu_g", "chi2_nu_r", "chi2_nu_z"]].to_numpy()
    np.testing.assert_allclose((per * npix).sum(1) / npix.sum(1), clean["chi2_nu"], rtol=1e-5)
    x2 = x.clone()
    x2[2, 1, :, 7] += 3.0  # a bad column in r
    hit = encode(model, ShardInputs(x2, w, ids, split, attrs))
    # the encoder sees the column too, so the reconstruction may shift a little in every band
    assert hit.loc[2, "chi2_nu_r"] > 20 * clean.loc[2, "chi2_nu_r"]
    assert hit.loc[2, "chi2_nu_r"] > 10 * max(hit.loc[2, "chi2_nu_g"], hit.loc[2, "chi2_nu_z"])


def test_nan_latents_are_not_flagged_and_not_dropped():
    table = _latents()
    table.loc[5, "mu_0"] = np.nan
    out = score(table)
    assert len(out) == len(table) and not out.loc[5, "is_outlier"] and np.isnan(out.loc[5, "mahalanobis_sigma"])


def test_too_few_galaxies_is_a_clear_error():
    with pytest.raises(ValueError, match="more galaxies"):
        score(_latents(n=5, k=6))


def test_roc_curve():
    """Every cut of five scores (two anomalies, ranked 1st and 3rd), worked out by hand; ties are one cut."""
    curve = roc(np.array([5.0, 4.0, 3.0, 2.0, 1.0]), np.array([True, False, True, False, False]))
    np.testing.assert_allclose(curve["tpr"], [0, 1 / 2, 1 / 2, 1, 1, 1])
    np.testing.assert_allclose(curve["fpr"], [0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    assert np.trapezoid(curve["tpr"], curve["fpr"]) == pytest.approx(5 / 6)  # 5 of the 6 (anomaly, normal) pairs
    tied = roc(np.array([2.0, 1.0, 1.0, 0.0]), np.array([False, True, False, True]))
    np.testing.assert_allclose(tied[["fpr", "tpr"]].to_numpy(), [[0, 0], [1 / 2, 0], [1, 1 / 2], [1, 1]])
    # every distinct score is a cut (ties are one), from inf down; unscored galaxies (NaN) rank last, as one cut
    curve = roc(np.array([3.0, np.nan, 2.0, 3.0, np.nan, 1.0]), np.array([True, True, False, False, False, True]))
    assert list(curve["threshold"]) == [np.inf, 3.0, 2.0, 1.0, -np.inf]
    assert list(curve["tpr"]) == [0, 1 / 3, 1 / 3, 2 / 3, 1] and list(curve["fpr"]) == [0, 1 / 3, 2 / 3, 2 / 3, 1]
    # one class only: the rate without a denominator is 0 (no warning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        only_normal = roc(np.array([2.0, 1.0]), np.array([False, False]))
    assert list(only_normal["tpr"]) == [0, 0, 0] and list(only_normal["fpr"]) == [0, 0.5, 1]


def test_mock_injects_every_kind_without_changing_other_galaxies(default_config):
    cfg = dict(default_config)
    base = draw_population(cfg | {"mock": cfg["mock"] | {"n_galaxies": 500}})
    none = draw_population(
        cfg | {"mock": cfg["mock"] | {"n_galaxies": 500, "anomalies": cfg["mock"]["anomalies"] | {"fraction": 0.0}}}
    )
    counts = base["anomaly"].value_counts()
    assert counts.drop("none").sum() == 10 and set(counts.index) == {"none", *KINDS}
    assert (none["anomaly"] == "none").all()
    same = [c for c in base.columns if not c.startswith("anomaly") and c != "is_single_sersic"]
    pd.testing.assert_frame_equal(base[same], none[same])
    assert not base.loc[base["anomaly"] != "none", "is_single_sersic"].any()


def test_anomalies_appear_where_they_should(truth, surveys, test_config):
    """Instrumental artefacts only in the artefact survey (trails and columns in one band);
    astrophysical anomalies add light in every survey."""
    bad = truth[truth["anomaly"] != "none"]
    assert len(bad) == 3
    rows = pd.concat([bad] * 2, ignore_index=True)
    plain = rows.copy()
    plain["anomaly"] = "none"
    both = pd.concat([rows.iloc[: len(bad)], plain.iloc[len(bad) :]], ignore_index=True)
    names = ["decals", "bass"]
    shards = render_shard(both, [surveys[n] for n in names], test_config["seed"], progress=False)
    for i, row in enumerate(bad.to_dict("records")):
        j = i + len(bad)
        for name in names:
            s = surveys[name]
            diff = shards[name].images[i] - shards[name].images[j]
            sigma = np.array(s.sky_sigma)[:, None, None]
            excess = (diff / sigma).sum(axis=(1, 2))
            if row["anomaly"] in INSTRUMENTAL:
                if name != "decals":
                    np.testing.assert_array_equal(diff, 0.0)
                else:
                    hit = [b for b, e in zip(s.bands, excess, strict=True) if e > 50]
                    assert hit == ([row["anomaly_band"]] if row["anomaly_band"] else list(s.bands)), row["anomaly"]
            else:
                assert (excess > 50).all(), (row["anomaly"], name, excess)
