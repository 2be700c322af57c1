"""Survey A -> survey B: resampling, the target shards, gradient reversal, AdaBN, DANN, the metrics."""

from __future__ import annotations

import galsim
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage

import galmap.domain.adaptation as domain
from galmap.classify.cnn import MorphologyCNN, predict, prediction_inputs, train_cnn
from galmap.core.config import ConfigError, check_references
from galmap.core.failures import FailureLog
from galmap.core.io import Shard, read_shard, write_shard
from galmap.core.resample import resample_matrix, resample_stamps
from galmap.domain.adaptation import (
    CNNEnsemble,
    adapt_batchnorm,
    domain_metrics,
    held_out_galaxies,
    target_batches,
    target_loader,
    target_shard,
    teacher_targets,
    train_dann,
    train_distill,
)
from galmap.nn.adversarial import reversal_strength, reverse_gradient
from galmap.nn.training import load_model, save_model


# --------------------------------------------------------------------------- resampling
def _render(scale: float, size: int) -> np.ndarray:
    gal = galsim.Sersic(n=1.5, half_light_radius=2.0, flux=100.0).shear(q=0.5, beta=30 * galsim.degrees)
    obj = galsim.Convolve(gal, galsim.Moffat(beta=3.5, fwhm=1.7))
    return obj.drawImage(nx=size, ny=size, scale=scale).array


def test_resampling_matches_the_image_rendered_on_the_new_grid():
    """A BASS-like stamp (0.454''/px) resampled to the DECaLS grid equals the galaxy drawn there; flux is kept."""
    coarse, fine = _render(0.454, 37), _render(0.262, 64)
    ivar = np.full((1, 1, 37, 37), 1e4, np.float32)
    up, _ = resample_stamps(coarse[None, None], ivar, 0.454, 64, 0.262)
    assert np.abs(up[0, 0] - fine).max() < 0.02 * fine.max()
    assert up.sum() == pytest.approx(fine.sum(), rel=2e-3)
    down, _ = resample_stamps(fine[None, None], np.ones((1, 1, 64, 64)), 0.262, 37, 0.454)
    assert np.abs(down[0, 0] - coarse).max() < 0.02 * coarse.max()
    assert down.sum() == pytest.approx(coarse.sum(), rel=2e-3)
    assert np.allclose(resample_matrix(37, 0.454, 64, 0.262).sum(1), 1.0)


def test_resampled_noise_matches_its_propagated_inverse_variance():
    rng = np.random.default_rng(3)
    noise = rng.normal(0.0, 0.01, (300, 1, 37, 37))
    out, ivar = resample_stamps(noise, np.full(noise.shape, 1e4), 0.454, 64, 0.262)
    inner = (slice(None), slice(None), slice(12, -12), slice(12, -12))
    predicted = float(np.mean(1 / np.sqrt(ivar[inner])))
    assert out[inner].std() == pytest.approx(predicted, rel=0.05)


def test_resampling_leaves_out_pixels_without_data():
    img = np.ones((1, 1, 37, 37), np.float32)
    ivar = np.ones_like(img)
    img[0, 0, 18, 18], ivar[0, 0, 18, 18] = np.nan, 0.0
    img[0, 0, 5, 30] = np.inf
    out, oiv = resample_stamps(img, ivar, 0.454, 64, 0.262)
    assert np.isfinite(out).all() and np.isfinite(oiv).all()
    assert oiv[0, 0, 31:33, 31:33].max() == 0  # the output pixels around the bad one have no data
    good = oiv > 0
    assert good.mean() > 0.9
    assert np.allclose(out[good], (0.262 / 0.454) ** 2, rtol=1e-3)  # flat surface brightness, renormalised


# --------------------------------------------------------------------------- target shards
def _component(name, bands, scale, size, ids, value=1.0):
    n = len(ids)
    images = np.full((n, len(bands), size, size), value, np.float32)
    attrs = {"survey": name, "bands": bands, "pixscale_arcsec": scale, "psf_fwhm_arcsec": [1.6] * len(bands)}
    return Shard(images, np.ones_like(images), np.asarray(ids, object), attrs, {"flags": np.zeros(n, np.int32)})


def test_target_shard_puts_each_band_on_the_source_grid_and_names_missing_galaxies():
    ids = ["a", "b", "c"]
    source = _component("decals", ["g", "r", "z"], 0.262, 24, ids)
    source.attrs["norm_softening"] = [0.1, 0.2, 0.3]
    bass = _component("bass", ["g", "r"], 0.454, 14, ["c", "a"], value=2.0)  # another order, "b" missing
    mzls = _component("mzls", ["z"], 0.262, 24, ids, value=3.0)
    failures = FailureLog("domain")
    out = target_shard(source, {"bass": bass, "mzls": mzls}, {"g": "bass", "r": "bass", "z": "mzls"}, failures)
    assert out.images.shape == (3, 3, 24, 24) and list(out.ids) == ids
    assert out.attrs["norm_softening"] == [0.1, 0.2, 0.3] and out.attrs["pixscale_arcsec"] == 0.262
    centre = out.images[:, :, 12, 12]
    assert np.allclose(centre[[0, 2], :2], 2.0 * (0.262 / 0.454) ** 2, rtol=1e-3)  # flux per pixel rescaled
    assert np.allclose(centre[:, 2], 3.0)
    assert (out.ivar[1, :2] == 0).all() and (out.ivar[1, 2] > 0).all()
    reasons = failures.frame()
    assert set(reasons["id"]) == {"b"} and reasons["reason"].str.contains("bass").all()
    empty = FailureLog("domain")
    none = target_shard(source, {"bass": _component("bass", ["g", "r"], 0.454, 14, []), "mzls": mzls},
                        {"g": "bass", "r": "bass", "z": "mzls"}, empty)  # fmt: skip
    assert len(none) == 3 and (none.ivar[:, :2] == 0).all() and set(empty.frame()["id"]) == set(ids)
    with pytest.raises(ValueError, match="no target survey observes band"):
        target_shard(source, {"bass": bass}, {"g": "bass", "r": "bass"})
    with pytest.raises(ValueError, match="has no band 'z'"):
        target_shard(source, {"bass": bass}, {"g": "bass", "r": "bass", "z": "bass"})


def _with_pairs(config, *pairs):
    return dict(config) | {"domain": dict(config["domain"]) | {"pairs": list(pairs)}}


def test_domain_pairs_name_configured_surveys_with_every_band(test_config):
    good = {"name": "sdss", "source": "decals", "target_bands": {"g": "sdss", "r": "sdss", "z": "sdss"}}
    mixed = {"name": "mixed", "target_bands": {"g": "sdss", "r": "bass", "z": "mzls"}}
    check_references(_with_pairs(test_config, good, good | mixed))
    for change, match in (
        (
            {"target_bands": {"g": "bass", "r": "bass"}},
            r"pairs\[0\] \(p\)\.target_bands' has no target survey for band\(s\) z",
        ),
        ({"target_bands": {"g": "sdss", "r": "sdss", "z": "sdss", "i": "sdss"}}, r"maps band\(s\) i, not bands"),
        (
            {"target_bands": {"g": "bass", "r": "bass", "z": "nowhere"}},
            "names survey 'nowhere', which is not configured",
        ),
        ({"target_bands": {"g": "bass", "r": "bass", "z": "bass"}}, "survey 'bass' has no band 'z'"),
        ({"source": "sdss"}, "the source must be 'decals'"),
        ({"distill": {"member": 1}}, "distill' overrides member, not keys of domain.distill"),
    ):
        with pytest.raises(ConfigError, match=match):
            check_references(_with_pairs(test_config, good | {"name": "p"} | change))
    with pytest.raises(ConfigError, match="names pair\\(s\\) sdss twice"):
        check_references(_with_pairs(test_config, good, good))


def test_a_default_pair_whose_survey_is_removed_is_skipped_alone():
    from galmap.core.config import load_yaml, merge, resolve_config
    from galmap.data.plan import domain_plan, skipped_messages, stage_plan
    from tests.conftest import REPO, SCHEMA

    default, schema = load_yaml(REPO / "config" / "config.yaml"), load_yaml(SCHEMA)
    cfg = resolve_config(merge(default, {"surveys": {"sdss": None, "halpha": None}}), schema, default)
    assert domain_plan(cfg) == {"bass_mzls": None, "sdss": "sdss: sdss not in the data"}
    assert stage_plan(cfg)["domain"] is None
    assert "galmap: domain pair skipped: sdss: sdss not in the data" in skipped_messages(cfg)
    # pairs the user sets (other than the default's) are checked strictly: a survey not configured stops the run
    with pytest.raises(ConfigError, match="names survey 'sdss', which is not configured"):
        only_sdss = {"surveys": {"sdss": None, "halpha": None}, "domain": {"pairs": default["domain"]["pairs"][1:]}}
        resolve_config(merge(default, only_sdss), schema, default)


def test_domain_pairs_are_validated_by_the_schema_and_take_their_overrides(test_config):
    from galmap.core.config import load_yaml, validate_config
    from galmap.domain.pairs import pair_settings
    from tests.conftest import SCHEMA

    schema = load_yaml(SCHEMA)
    with pytest.raises(ConfigError, match="domain.pairs.0"):
        validate_config(_with_pairs(test_config, {"name": "Bad Name", "target_bands": {"g": "sdss"}}), schema)
    with pytest.raises(ConfigError, match="target_bands"):
        validate_config(_with_pairs(test_config, {"name": "sdss"}), schema)
    sdss = {"name": "sdss", "target_bands": {"g": "sdss", "r": "sdss", "z": "sdss"}, "distill": {"members": 1}}
    cfg = validate_config(_with_pairs(test_config, sdss), schema)
    pair = cfg["domain"]["pairs"][0]
    assert pair["source"] == "decals" and pair["dann"] == {}  # the items' defaults are filled in
    assert pair_settings(cfg["domain"], "sdss", "distill")["members"] == 1
    assert pair_settings(cfg["domain"], "sdss", "distill")["epochs"] == cfg["domain"]["distill"]["epochs"]
    assert pair_settings(cfg["domain"], "sdss", "dann") == cfg["domain"]["dann"]


# --------------------------------------------------------------------------- gradient reversal, AdaBN
def test_gradient_reversal_is_the_identity_forward_and_negates_the_gradient():
    x = torch.randn(5, 3, requires_grad=True)
    y = reverse_gradient(x, 0.7)
    assert torch.equal(y, x)
    (y * torch.arange(3.0)).sum().backward()
    assert torch.allclose(x.grad, -0.7 * torch.arange(3.0).expand(5, 3))
    assert reversal_strength(0.0) == 0.0 and 0.99 < reversal_strength(1.0) < 1.0
    assert reversal_strength(0.2) < reversal_strength(0.5)


def test_adabn_reestimates_batchnorm_statistics_only():
    torch.manual_seed(0)
    model = MorphologyCNN(1, [2], [4]).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = 3.0 + 2.0 * torch.randn(40, 1, 16, 16)
    adapted = adapt_batchnorm(model, [x[:16], x[16:]])
    first = adapted.body[1]
    conv = model.body[0](x)
    assert torch.allclose(first.running_mean, conv.mean(dim=(0, 2, 3)), atol=1e-4)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])  # the source model is untouched
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(adapted.state_dict()[k], v)  # and no weight changes
    assert not adapted.training
    with pytest.raises(ValueError, match="no target image"):
        adapt_batchnorm(model, [])


def test_shards_read_once_give_the_same_predictions_and_adabn_batches_as_their_paths(tmp_path):
    """domain_predict reads each shard once for every model: the same tables and AdaBN batches as from the paths."""
    rng = np.random.default_rng(3)
    n = 50
    images = rng.normal(1.0, 0.5, (n, 1, 16, 16)).astype(np.float32)
    ids = np.array([f"g{i:03d}" for i in range(n)], object)
    attrs = {"survey": "a", "bands": ["r"], "pixscale_arcsec": 0.2, "psf_fwhm_arcsec": [1.0],
             "norm_softening": [0.2], "preprocessed": True}  # fmt: skip
    paths = [tmp_path / "s0.h5", tmp_path / "s1.h5"]
    write_shard(paths[0], Shard(images[:30], np.ones_like(images[:30]), ids[:30], attrs))
    write_shard(paths[1], Shard(images[30:], np.ones_like(images[30:]), ids[30:], attrs))
    split = np.where(np.arange(n) % 4 == 0, "test", "train")
    targets = pd.DataFrame({"id": ids[:45], "question": "round", "class": np.arange(45) % 2, "split": split[:45]})
    torch.manual_seed(0)
    model = MorphologyCNN(1, [2], [4]).eval()
    read = [prediction_inputs(p, targets, ["round"]) for p in paths]
    by_path = predict(model, paths, targets, ["round"], batch_size=16)
    pd.testing.assert_frame_equal(predict(model, read, targets, ["round"], batch_size=16), by_path, check_exact=True)
    assert len(by_path) == 45  # galaxies without a label are read but not reported
    held = held_out_galaxies(targets)
    a, b = list(target_batches(paths, held, 8)), list(target_batches(read, held, 8))
    assert [len(x) for x in a] == [len(x) for x in b] and sum(len(x) for x in a) == n - len(held)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


# --------------------------------------------------------------------------- a synthetic domain shift
def _blobs(n: int, rng: np.random.Generator, blur: float, noise: float, scale: float = 1.0):
    """Round (class 0) or elongated (class 1) Gaussian blobs at random angles: (images, classes)."""
    y, x = np.mgrid[:32, :32] - 15.5
    cls = rng.integers(0, 2, n)
    images = np.zeros((n, 1, 32, 32), np.float32)
    for i in range(n):
        q = rng.uniform(0.75, 1.0) if cls[i] == 0 else rng.uniform(0.3, 0.55)
        th, s = rng.uniform(0, np.pi), rng.uniform(2.5, 4.5)
        xr, yr = x * np.cos(th) + y * np.sin(th), -x * np.sin(th) + y * np.cos(th)
        im = ndimage.gaussian_filter(np.exp(-0.5 * ((xr / s) ** 2 + (yr / (s * q)) ** 2)), blur)
        images[i, 0] = scale * im / im.max() * rng.uniform(0.5, 1.5) + rng.normal(0, noise, (32, 32))
    return images, cls


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    """Source and target shards of the same 240 galaxies; the target blurred, dimmed and noisier."""
    tmp = tmp_path_factory.mktemp("domain")
    n = 240
    xs, ys = _blobs(n, np.random.default_rng(1), 0.5, 0.05)
    xt, yt = _blobs(n, np.random.default_rng(1), 1.5, 0.05, 0.3)  # the same galaxies, seen by survey b
    ids = np.array([f"g{i:04d}" for i in range(n)], object)
    attrs = {"survey": "a", "bands": ["r"], "pixscale_arcsec": 0.2, "psf_fwhm_arcsec": [1.0],
             "norm_softening": [0.2], "preprocessed": True}  # fmt: skip
    write_shard(tmp / "source.h5", Shard(xs, np.full_like(xs, 100.0), ids, attrs))
    write_shard(tmp / "target.h5", Shard(xt, np.full_like(xt, 100.0), ids, attrs | {"survey": "b"}))
    # a second pair's target: the same galaxies on coarser pixels (2 x 2 blocks) and with more noise
    xc, _ = _blobs(n, np.random.default_rng(1), 1.0, 0.12, 0.5)
    xc = np.repeat(np.repeat(xc.reshape(n, 1, 16, 2, 16, 2).mean((3, 5)), 2, 2), 2, 3)
    write_shard(tmp / "target_sdss.h5", Shard(xc, np.full_like(xc, 50.0), ids, attrs | {"survey": "c"}))
    split = np.where(np.arange(n) % 5 == 0, "test", np.where(np.arange(n) % 5 == 1, "val", "train"))
    source_targets = pd.DataFrame({"id": ids, "question": "round", "class": ys, "split": split})
    target_truth = source_targets.assign(**{"class": yt})  # scoring only
    params = {"channels": [8, 16], "dropout": 0.1, "augment": True, "batch_size": 32, "max_epochs": 15,
              "patience": 100, "learning_rate": 3e-3, "weight_decay": 1e-4, "cache_mb": 100}  # fmt: skip
    model, _, _ = train_cnn([tmp / "source.h5"], source_targets, ["round"], [2], params, 0, progress=False)
    return tmp, model, source_targets, target_truth


DANN = {"hidden": 32, "domain_weight": 1.0, "batch_size": 32, "max_epochs": 15, "learning_rate": 1e-3,
        "weight_decay": 1e-4, "augment": True, "cache_mb": 100}  # fmt: skip


def _accuracy(model, path, targets) -> float:
    p = predict(model, [path], targets, ["round"])
    p = p[p["split"] == "test"]
    return float((p["true_class"] == p["pred_class"]).mean())


def test_adaptation_improves_target_accuracy_under_a_blur_rescale_noise_shift(shifted):
    tmp, model, source_targets, target_truth = shifted
    source_acc = _accuracy(model, tmp / "source.h5", source_targets)
    unadapted = _accuracy(model, tmp / "target.h5", target_truth)
    assert source_acc > 0.9 and unadapted < source_acc - 0.2  # the shift hurts
    adabn = adapt_batchnorm(model, target_batches([tmp / "target.h5"], held_out_galaxies(source_targets), 32))
    dann, history = train_dann(model, [tmp / "source.h5"], [tmp / "target.h5"], source_targets, ["round"], DANN, 0,
                               progress=False)  # fmt: skip
    assert _accuracy(adabn, tmp / "target.h5", target_truth) > unadapted + 0.1
    assert _accuracy(dann, tmp / "target.h5", target_truth) > unadapted + 0.1
    assert len(history) == DANN["max_epochs"] and history["best"].iloc[-1]  # the last epoch is kept
    assert {"train_domain_loss", "train_domain_accuracy", "val_accuracy"} <= set(history.columns)


DISTILL = {"members": 2, "epochs": 8, "temperature": 2.0, "feature_weight": 1.0, "batch_size": 32,
           "learning_rate": 1e-3, "weight_decay": 1e-4, "augment": True, "val_fraction": 0.1,
           "cache_mb": 100}  # fmt: skip


def test_distillation_on_the_overlap_recovers_target_accuracy(shifted, tmp_path):
    tmp, model, source_targets, target_truth = shifted
    unadapted = _accuracy(model, tmp / "target.h5", target_truth)
    held_out = held_out_galaxies(source_targets)
    ens, history = train_distill(model, [tmp / "source.h5"], [tmp / "target.h5"], held_out, DISTILL, 0, progress=False)
    assert isinstance(ens, CNNEnsemble) and len(ens.members) == 2 and not ens.training
    assert _accuracy(ens, tmp / "target.h5", target_truth) > unadapted + 0.1
    assert len(history) == DISTILL["epochs"] and history["best"].iloc[-1]  # the last epoch is kept
    assert history["train_kl"].iloc[-1] < history["train_kl"].iloc[0]
    # the members differ (each saw its own orientations) and the file round-trips
    a, b = (m.state_dict() for m in ens.members)
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())
    save_model(tmp_path / "ens.pt", ens, {"model": ens.config()})
    again, _ = load_model(tmp_path / "ens.pt", CNNEnsemble)
    x = torch.from_numpy(read_shard(tmp / "target.h5").images[:5])
    assert all(torch.allclose(p, q) for p, q in zip(ens(x), again(x), strict=True))
    # seeded: the same seed gives the same weights
    ens2, _ = train_distill(model, [tmp / "source.h5"], [tmp / "target.h5"], held_out, DISTILL | {"epochs": 1}, 5,
                            progress=False)  # fmt: skip
    ens3, _ = train_distill(model, [tmp / "source.h5"], [tmp / "target.h5"], held_out, DISTILL | {"epochs": 1}, 5,
                            progress=False)  # fmt: skip
    for k, v in ens2.state_dict().items():
        assert torch.equal(v, ens3.state_dict()[k]), k


def test_the_ensemble_averages_its_members_probabilities():
    torch.manual_seed(0)
    base = MorphologyCNN(2, [3, 2], [4, 8]).eval()
    ens = CNNEnsemble.of(base, 3).eval()
    with torch.no_grad():
        for k, m in enumerate(ens.members):
            m.heads[0].bias += k  # make the members disagree
        x = torch.randn(6, 2, 16, 16)
        out = ens(x)
        for q in range(2):
            mean = torch.stack([torch.softmax(m(x)[q], 1) for m in ens.members]).mean(0)
            assert torch.allclose(torch.softmax(out[q], 1), mean, atol=1e-6)
            assert torch.allclose(out[q].exp().sum(1), torch.ones(6), atol=1e-5)  # already normalised
    with pytest.raises(ValueError, match="at least one member"):
        CNNEnsemble(2, [3], [4], 0.1, 0)


def test_the_teachers_targets_do_not_depend_on_the_orientation():
    torch.manual_seed(1)
    teacher = MorphologyCNN(3, [3, 2], [4, 8]).eval()
    x = torch.randn(5, 3, 20, 20)
    y = teacher_targets(teacher, x, 2.0)
    assert y.shape == (5, 8 + 3 + 2)
    for view in (torch.rot90(x, 1, (-2, -1)), x.flip(-1), torch.rot90(x.flip(-2), 3, (-2, -1))):
        assert torch.allclose(teacher_targets(teacher, view, 2.0), y, atol=1e-5)
    assert torch.allclose(y[:, 8:11].sum(1), torch.ones(5)) and torch.allclose(y[:, 11:].sum(1), torch.ones(5))
    hot = teacher_targets(teacher, x, 0.5)[:, 8:11].max(1).values
    assert (hot >= y[:, 8:11].max(1).values - 1e-6).all()  # a lower temperature sharpens the probabilities


PAIRS = ["target.h5", "target_sdss.h5"]  # the two shifts of the fixture: each pair's target shard


@pytest.mark.parametrize("target_name", PAIRS)
def test_distillation_reads_no_label_and_leaves_out_the_test_galaxies(shifted, tmp_path, target_name):
    """The training sees pixels and the teacher's outputs only: scrambling every label changes no weight (each pair)."""
    from galmap.domain.jobs import domain_distill_file

    tmp, model, source_targets, _ = shifted
    save_model(tmp_path / "cnn.pt", model, {"model": model.config(), "questions": ["round"]})
    params = DISTILL | {"epochs": 2}
    weights = []
    for k, table in enumerate([source_targets, source_targets.assign(**{"class": 1 - source_targets["class"]})]):
        table.to_parquet(tmp_path / f"targets{k}.parquet")
        out = tmp_path / f"run{k}"
        out.mkdir()
        domain_distill_file(params, 3, str(tmp_path / f"targets{k}.parquet"), str(tmp_path / "cnn.pt"),
                            [str(tmp / "source.h5")], [str(tmp / target_name)], str(out / "model.pt"),
                            str(out / "history.csv"))  # fmt: skip
        weights.append(load_model(out / "model.pt", CNNEnsemble)[0].state_dict())
        assert not (out / "checkpoint.pt").exists()
    for key, v in weights[0].items():
        assert torch.equal(v, weights[1][key]), key
    # the pairs: target pixels, the teacher's view of the source as y, no test galaxy
    held_out = held_out_galaxies(source_targets)
    load = domain.paired_loader(model, {tmp / "source.h5": tmp / target_name}, held_out, params, 0)
    pairs = load(tmp / "source.h5")
    assert not set(pairs.ids) & held_out and len(pairs) == len(source_targets) - len(held_out)
    assert pairs.y.shape == (len(pairs), model.channels[-1] + 2)
    assert torch.equal(pairs.x, target_loader(held_out)(tmp / target_name).x)  # the target's pixels
    with pytest.raises(ValueError, match="no galaxy with both a source and a target image outside the test split"):
        train_distill(model, [tmp / "source.h5"], [tmp / target_name], set(source_targets["id"]), params, 0,
                      progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="does not hold the galaxies"):
        other = read_shard(tmp / target_name)
        write_shard(
            tmp_path / "reordered.h5", Shard(other.images[::-1], other.ivar[::-1], other.ids[::-1], other.attrs)
        )
        train_distill(model, [tmp / "source.h5"], [tmp_path / "reordered.h5"], held_out, params, 0, progress=False)


@pytest.mark.parametrize("target_name", PAIRS)
def test_no_target_label_reaches_the_training(shifted, monkeypatch, target_name):
    """Labels enter DANN only through the source loader; test-split labels change nothing (each pair)."""
    tmp, model, source_targets, _ = shifted
    labelled = []
    real = domain.cnn_loader

    def spy(lookup, n_questions, role):
        load = real(lookup, n_questions, role)

        def wrapped(path):
            labelled.append(str(path))
            return load(path)

        return wrapped

    monkeypatch.setattr(domain, "cnn_loader", spy)
    params = DANN | {"max_epochs": 2}
    a, _ = train_dann(model, [tmp / "source.h5"], [tmp / target_name], source_targets, ["round"], params, 3,
                      progress=False)  # fmt: skip
    assert labelled and all(p.endswith("source.h5") for p in labelled)
    # scrambling the labels of the test split (the galaxies the target is scored on) changes no weight
    scrambled = source_targets.copy()
    test = scrambled["split"] == "test"
    scrambled.loc[test, "class"] = 1 - scrambled.loc[test, "class"]
    b, _ = train_dann(model, [tmp / "source.h5"], [tmp / target_name], scrambled, ["round"], params, 3,
                      progress=False)  # fmt: skip
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    # a target pool made only of test galaxies leaves nothing to adapt to: a clear error, not a silent run
    test_only = read_shard(tmp / target_name)
    keep = np.isin(test_only.ids, sorted(held_out_galaxies(source_targets)))
    test_only = Shard(test_only.images[keep], test_only.ivar[keep], test_only.ids[keep], test_only.attrs)
    write_shard(tmp / "test-only.h5", test_only)
    with pytest.raises(ValueError, match="no unlabelled target image outside the test split"):
        train_dann(model, [tmp / "source.h5"], [tmp / "test-only.h5"], source_targets, ["round"], params, 3,
                   progress=False)  # fmt: skip
    # the unlabelled target pool carries no targets and leaves out every test galaxy
    pool = target_loader(held_out_galaxies(source_targets))(tmp / target_name)
    assert pool.y is None and not set(pool.ids) & held_out_galaxies(source_targets)
    assert len(pool) == int((~test).sum())


# --------------------------------------------------------------------------- metrics
def test_domain_metrics_are_paired_and_count_the_recovered_drop():
    ids = [f"g{i}" for i in range(10)]
    targets = pd.DataFrame({"id": ids, "question": "q", "class": [0, 1] * 5, "split": ["test"] * 8 + ["train"] * 2})
    truth = np.array([0, 1] * 5)

    def preds(n_wrong):
        pred = truth.copy()
        pred[:n_wrong] = 1 - pred[:n_wrong]
        return pd.DataFrame({"id": ids, "question": "q", "split": targets["split"], "true_class": truth,
                             "pred_class": pred, "confidence": 0.9})  # fmt: skip

    tables = {("source_only", "source"): preds(0), ("source_only", "target"): preds(4), ("dann", "target"): preds(1),
              ("dann", "source"): preds(0)}  # fmt: skip
    m = domain_metrics(tables, targets, {"q": ["a", "b"]}).set_index(["question", "method", "domain"])
    assert m.loc[("q", "source_only", "source"), "accuracy"] == 1.0
    assert m.loc[("q", "source_only", "target"), "accuracy"] == 0.5
    row = m.loc[("q", "dann", "target")]
    assert row["accuracy"] == 7 / 8 and row["n_test"] == 8
    assert row["change"] == pytest.approx(3 / 8) and row["recovered"] == pytest.approx(0.75)
    assert row["change_se"] > 0
    assert m.loc[("mean", "dann", "target"), "recovered"] == pytest.approx(0.75)
    assert m.loc[("mean", "dann", "target"), "change_se"] == pytest.approx(row["change_se"])  # one question


def test_bootstrap_intervals_are_paired_and_the_summary_uses_the_validation_split():
    from galmap.domain.adaptation import best_method, domain_summary

    rng = np.random.default_rng(0)
    n = 400
    ids = [f"g{i}" for i in range(n)]
    split = np.where(np.arange(n) < 300, "test", "val")
    rows = []
    for q in ("bar", "arms"):
        rows.append(pd.DataFrame({"id": ids, "question": q, "class": rng.integers(0, 2, n), "split": split}))
    targets = pd.concat(rows, ignore_index=True)
    truth = targets["class"].to_numpy()

    def preds(p_wrong, seed, val_wrong=None):
        r = np.random.default_rng(seed)
        wrong = r.random(len(truth)) < np.where(split[np.arange(len(truth)) % n] == "val",
                                                p_wrong if val_wrong is None else val_wrong, p_wrong)  # fmt: skip
        return targets.rename(columns={"class": "true_class"}).assign(pred_class=np.where(wrong, 1 - truth, truth))

    so_src = preds(0.2, 1)
    so_tgt = preds(0.35, 2)
    fixed = so_tgt.copy()  # adaptation: fixes a third of the target's mistakes, breaks nothing
    mistakes = np.flatnonzero(fixed["pred_class"] != fixed["true_class"])
    fixed.loc[mistakes[::3], "pred_class"] = fixed.loc[mistakes[::3], "true_class"]
    tables = {("source_only", "source"): so_src, ("source_only", "target"): so_tgt, ("distill", "target"): fixed,
              ("dann", "target"): preds(0.5, 3, val_wrong=0.0)}  # fmt: skip
    m = domain_metrics(tables, targets, {"bar": ["no", "yes"], "arms": ["no", "yes"]}, resamples=200, seed=4)
    assert m[["accuracy_lo", "accuracy_hi", "change_lo", "change_hi"]].notna().all().all()
    assert (m["accuracy_lo"] <= m["accuracy"] + 1e-9).all() and (m["accuracy"] <= m["accuracy_hi"] + 1e-9).all()
    mi = m.set_index(["question", "method", "domain"])
    # paired: a change that never hurts has a non-negative interval, narrower than the accuracies' difference would
    d = mi.loc[("mean", "distill", "target")]
    assert d["change_lo"] >= 0 and d["change_hi"] - d["change_lo"] < (d["accuracy_hi"] - d["accuracy_lo"])
    t = mi.loc[("mean", "source_only", "target")]
    assert t["drop"] == pytest.approx(mi.loc[("mean", "source_only", "source"), "accuracy"] - t["accuracy"])
    assert t["drop_lo"] < t["drop"] < t["drop_hi"] and t["drop_se"] > 0
    # the best method is chosen on the validation split: DANN is perfect there (and worse on the test split)
    assert best_method(tables) == "dann"
    summary = domain_summary(m, "distill").set_index("question")
    assert list(summary.index) == ["bar", "mean"]
    row = summary.loc["mean"]
    assert row["significant"] and row["worse_questions"] == "" and row["method"] == "distill"
    assert row["source"] > row["adapted"] > row["unadapted"] and 0 < row["recovered"] < 1
    assert domain_summary(m, "dann").loc[:, "worse_questions"].iloc[-1] != ""  # DANN is worse on the test split


def test_the_training_loop_refuses_an_unknown_choice_of_epoch():
    from galmap.nn.training import TrainSettings, train

    model = MorphologyCNN(1, [2], [4])
    settings = TrainSettings(max_epochs=1, patience=1, learning_rate=1e-3, seed=0, keep="first")
    with pytest.raises(ValueError, match="keep must be 'best' or 'last', not 'first'"):
        train(model, lambda *a: {}, lambda e: [], lambda: [], settings, progress=False)
