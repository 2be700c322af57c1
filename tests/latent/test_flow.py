"""The conditional flow p(latents | parameters), the parameter table and the closure measurement."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from galmap.core.config import ConfigError, validate_config
from galmap.core.config import load_yaml as _load_yaml
from galmap.latent.flow import ConditionalFlow, load_flow, mean_log_prob, sample_latents, save_flow, train_flow
from galmap.latent.flow_closure import closure_summary, closure_table, gallery_values, measure_parameters
from galmap.preprocess.stamps import preprocess_shard
from galmap.structure.measure import fit_sersic_shard, morphometry_shard
from galmap.structure.parameters import check_names, parameter_table
from tests.conftest import SCHEMA, merged_test_config

NAMES = ["g-r", "sersic_n", "re_arcsec", "gini"]
FLOW = {"hidden_features": 32, "num_layers": 3, "num_blocks": 2, "batch_size": 64, "max_epochs": 40,
        "patience": 40, "learning_rate": 0.003, "weight_decay": 0.0, "device": "cpu"}  # fmt: skip


def _toy(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Latents (n, 6) that depend on four parameters, plus noise; a train/val split."""
    rng = np.random.default_rng(seed)
    params = np.column_stack(
        [rng.normal(0.6, 0.15, n), np.exp(rng.normal(0.7, 0.4, n)), np.exp(rng.normal(0.3, 0.5, n)),
         rng.normal(0.5, 0.05, n)]
    )  # fmt: skip
    z = rng.normal(0, 0.3, (n, 6))
    z[:, 0] += 5 * (params[:, 0] - 0.6)
    z[:, 1] += np.log(params[:, 1])
    z[:, 2] += 2 * np.log(params[:, 2]) - z[:, 0]
    split = np.where(np.arange(n) % 5 == 0, "val", "train")
    return z, params, split


@pytest.fixture(scope="module")
def toy_flow():
    z, params, split = _toy()
    model, history = train_flow(z, params, split, NAMES, FLOW, seed=3, progress=False)
    return model, history, z, params, split


def test_log_likelihood_improves_during_a_short_fit(toy_flow):
    model, history, z, params, split = toy_flow
    assert history["val_log_prob_per_dim"].max() > history["val_log_prob_per_dim"].iloc[0] + 0.3
    # the context carries information: held-out likelihood beats the same flow with shuffled parameters
    val = split == "val"
    shuffled = params[val][np.random.default_rng(0).permutation(val.sum())]
    assert mean_log_prob(model, z[val], params[val]) > mean_log_prob(model, z[val], shuffled) + 0.2


def test_sampling_with_a_context_has_the_right_shape_and_follows_it(toy_flow, tmp_path):
    model, _, z, params, _ = toy_flow
    out = sample_latents(model, params[:50], seed=1)
    assert out.shape == (50, 6) and np.isfinite(out).all()
    assert np.array_equal(out, sample_latents(model, params[:50], seed=1))
    assert not np.array_equal(out, sample_latents(model, params[:50], seed=2))
    central = sample_latents(model, params[:200], seed=None)
    assert stats.spearmanr(central[:, 0], params[:200, 0])[0] > 0.9
    assert stats.spearmanr(central[:, 1], np.log(params[:200, 1]))[0] > 0.9
    save_flow(tmp_path / "flow.pt", model, {"model": model.config()})
    again, _ = load_flow(tmp_path / "flow.pt")
    assert np.allclose(sample_latents(again, params[:50], seed=1), out, atol=1e-5)


def test_flow_rejects_too_little_data():
    z, params, _ = _toy(4)
    with pytest.raises(ValueError, match="at least two training galaxies"):
        train_flow(z, params, np.array(["val"] * 4), NAMES, FLOW, seed=0, progress=False)


def test_parameter_names_are_checked():
    check_names(["g-r", "r-z", "sersic_n", "gini", "m20"], ["g", "r", "z"])
    with pytest.raises(ValueError, match="band.*i"):
        check_names(["g-i"], ["g", "r", "z"])
    with pytest.raises(ValueError, match="unknown parameter 'bulginess'"):
        check_names(["bulginess"], ["g", "r", "z"])
    raw = merged_test_config()
    schema = _load_yaml(SCHEMA)
    with pytest.raises(ConfigError, match="flow.parameters.*g-i"):
        validate_config(raw | {"flow": {"parameters": ["g-i"]}}, schema)
    with pytest.raises(ConfigError, match="gallery_parameters"):
        validate_config(raw | {"flow": {"parameters": ["g-r"], "gallery_parameters": ["gini"]}}, schema)


@pytest.fixture(scope="module")
def measured(test_config):
    """The structure stage's tables of the test population's DECaLS images, and the preprocessed shard.

    Drawn through the nominal PSF (``mock.systematics.psf`` off): the closure measurement's consistency is tested
    here; what a PSF mismatch does to the fits is tested in ``tests/mock/test_systematics.py``."""
    from galmap.core.surveys import surveys_from_config
    from galmap.mock.population import draw_population
    from galmap.mock.render import render_shard

    systematics = dict(test_config["mock"]["systematics"]) | {"psf": {"enabled": False}}
    cfg = test_config | {"mock": dict(test_config["mock"]) | {"systematics": systematics}}
    decals = surveys_from_config(cfg)["decals"]
    raw = render_shard(draw_population(cfg), [decals], cfg["seed"], progress=False)["decals"]
    pre = preprocess_shard(raw, test_config["preprocess"])
    sersic = fit_sersic_shard(pre, test_config["structure"])
    morph = morphometry_shard(pre, test_config["structure"]["morph_band"])
    table, reasons = parameter_table(sersic, morph, NAMES)
    return pre, table, reasons


def test_parameter_table_has_every_galaxy_and_says_why_not(measured):
    pre, table, reasons = measured
    assert list(table["id"]) == [str(i) for i in pre.ids]
    usable = (reasons == "").to_numpy()
    assert usable.mean() > 0.7
    assert np.isfinite(table.loc[usable, NAMES].to_numpy()).all()


def test_closure_measurement_of_real_images_gives_back_their_parameters(measured, test_config):
    """Measuring the preprocessed (real, not generated) images again reproduces the structure stage's values."""
    pre, table, reasons = measured
    again, again_reasons = measure_parameters(
        pre.images, pre.ivar, pre.ids, pre.attrs, NAMES, test_config["preprocess"], test_config["structure"]
    )
    ok = ((reasons == "") & (again_reasons == "")).to_numpy()
    assert ok.sum() >= 0.7 * len(ok)
    a, b = table.set_index("id").loc[ok], again.set_index("id").loc[ok]
    assert np.median(np.abs(a["g-r"] - b["g-r"])) < 0.02
    for name in ("sersic_n", "re_arcsec"):
        assert np.median(np.abs(np.log(a[name] / b[name]))) < 0.05, name
    assert np.median(np.abs(a["gini"] - b["gini"])) < 0.02
    for name in NAMES:
        assert stats.spearmanr(a[name], b[name])[0] > 0.9, name


def test_closure_table_and_summary():
    requested = pd.DataFrame({"id": ["a", "b", "c", "d", "e"], "x": [1.0, 2, 3, 4, 5]})
    measured = pd.DataFrame({"id": ["a", "b", "c", "e"], "x": [1.1, 2.3, 2.9, 5.5]})
    closure = closure_table(requested, measured, ["x"])
    assert list(closure.columns) == ["id", "latent", "parameter", "requested", "measured"]
    assert len(closure) == 5 and np.isnan(closure.loc[closure["id"] == "d", "measured"]).all()
    row = closure_summary(closure).iloc[0]
    assert row["n_requested"] == 5 and row["n_measured"] == 4 and row["spearman_r"] == pytest.approx(1.0)
    measured.loc[3, "x"] = 0.0  # the largest request comes out smallest
    assert closure_summary(closure_table(requested, measured, ["x"])).iloc[0]["spearman_r"] < 0.5


def test_gallery_varies_one_parameter_at_a_time():
    train = pd.DataFrame({"a": np.arange(100.0), "b": np.linspace(1, 2, 100)})
    grid = gallery_values(train, ["a", "b"], ["b"], 4)
    assert grid.shape == (1, 4, 2)
    assert np.allclose(grid[0, :, 0], 49.5) and np.all(np.diff(grid[0, :, 1]) > 0)
    assert ConditionalFlow(3, ["a", "sersic_n"]).log_mask.tolist() == [False, True]


def test_a_generated_image_with_non_finite_pixels_is_reported(measured, test_config):
    """A decoded latent that overflows (inf pixels) is named in the failures with the cause."""
    from galmap.core.failures import FailureLog

    pre, _, _ = measured
    images = pre.images[:4].copy()
    images[1, :, 10:20, 10:20] = np.inf
    failures = FailureLog("flow")
    table, reasons = measure_parameters(
        images, pre.ivar[:4], pre.ids[:4], pre.attrs, NAMES, test_config["preprocess"], test_config["structure"],
        failures,
    )  # fmt: skip
    bad = str(pre.ids[1])
    assert len(table) == 4
    why = failures.frame().set_index("id").loc[[bad], "reason"].tolist()
    assert any("non-finite pixels" in w for w in why)
    others = failures.frame()[failures.frame()["id"] != bad]
    assert not others["reason"].str.contains("non-finite").any()
