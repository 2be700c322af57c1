"""The unified latent space on a tiny synthetic two-survey sky: survey "lo" is survey "hi" blurred and rebinned 2x2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from galmap.nn.inputs import assign_split
from galmap.unified.data import SurveyStack
from galmap.unified.evaluate import posteriors, retrieval_distances, retrieval_table, top_k_rate, translate
from galmap.unified.model import Alignment, UnifiedVAE, product_of_experts, unified_loss
from galmap.unified.train import train_unified

NOISE = 0.05  # per-pixel noise (asinh scale) of both surveys


def _galaxies(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 1, size, size) elliptical Gaussians of random flux, size, axis ratio, angle and centre."""
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    out = np.empty((n, 1, size, size), np.float32)
    for i in range(n):
        amp, sig, q, pa = rng.uniform(1, 4), rng.uniform(1.2, 4), rng.uniform(0.3, 1), rng.uniform(0, np.pi)
        dx, dy = rng.uniform(-2, 2, 2)
        c, s = np.cos(pa), np.sin(pa)
        u, v = c * (x - dx) + s * (y - dy), -s * (x - dx) + c * (y - dy)
        out[i, 0] = amp * np.exp(-0.5 * (u**2 + (v / q) ** 2) / sig**2)
    return out


def _blur_rebin(img: np.ndarray) -> np.ndarray:
    """A 1-2-1 blur six times (a ~1.7 px Gaussian) and a 2x2 mean: the "lo" survey's view."""
    k = np.array([1, 2, 1], np.float32) / 4
    out = img
    for _ in range(6):
        out = np.apply_along_axis(lambda r: np.convolve(r, k, "same"), -1, out)
        out = np.apply_along_axis(lambda r: np.convolve(r, k, "same"), -2, out)
    n, b, h, w = out.shape
    return out.reshape(n, b, h // 2, 2, w // 2, 2).mean((3, 5))


def _rebin(img: np.ndarray) -> np.ndarray:
    n, b, h, w = img.shape
    return img.reshape(n, b, h // 2, 2, w // 2, 2).mean((3, 5))


def _sky(n: int = 240, seed: int = 3) -> tuple[SurveyStack, np.ndarray]:
    rng = np.random.default_rng(seed)
    hi = _galaxies(n, 16, rng)
    lo = _blur_rebin(hi)
    ids = np.array([f"g{i:04d}" for i in range(n)], dtype=object)
    xs, ws = {}, {}
    for name, clean in (("hi", hi), ("lo", lo)):
        xs[name] = torch.from_numpy(clean + NOISE * rng.standard_normal(clean.shape).astype(np.float32))
        ws[name] = torch.full(clean.shape, 1 / NOISE**2)
    split = assign_split(list(ids), seed, 0.15, 0.25)
    attrs = {s: {"bands": ["r"], "norm_softening": [1.0], "pixscale_arcsec": 0.2 * (1 + (s == "lo"))} for s in xs}
    return SurveyStack(ids, split, ["hi", "lo"], xs, ws, torch.ones(n, 2), attrs), lo


#: the default config's alignment settings: the contrastive term, the survey adversary, the retrieval distance
DEFAULT = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "config.yaml").read_text())["unified"]
ALIGN = {k: DEFAULT[k] for k in ("align_weight", "contrastive_weight", "temperature", "contrastive_metric",
                                 "adversary_weight", "adversary_hidden", "mean_align_weight")}  # fmt: skip
METRIC = DEFAULT["retrieval_metric"]
#: every alignment term on (the masking test)
EVERY_TERM = Alignment(align_weight=2.0, contrastive_weight=1.0, adversary_weight=1.0)

PARAMS = {
    "surveys": ["hi", "lo"], "decode_only": [], "latent_dim": 8, "channels": [8, 16], "batch_size": 16,
    "max_epochs": 30, "patience": 30, "learning_rate": 0.003, "kl_weight": 1.0, "kl_warmup_epochs": 2,
    "sys_error": 0.0, "cross": True, "val_fraction": 0.15, "test_fraction": 0.25, "device": "cpu", **ALIGN,
}  # fmt: skip


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    stack, lo_clean = _sky()
    model, history, _ = train_unified(stack, PARAMS, seed=5, progress=False)
    return stack, lo_clean, model, history


def test_pair_latents_closer_than_other_galaxies(trained):
    stack, _, model, _ = trained
    post = posteriors(model, stack)
    test = np.flatnonzero(stack.split == "test")
    mu_h, lv_h, _ = post["hi"]
    mu_l, lv_l, _ = post["lo"]
    d = retrieval_distances(mu_h[test], lv_h[test], mu_l[test], lv_l[test], METRIC)
    own = np.diag(d)
    other = np.where(np.eye(len(test), dtype=bool), np.nan, d)
    # nearly every galaxy's two views are closer than the typical other galaxy, and much closer on average
    assert np.mean(own < np.nanmedian(other, axis=1)) >= 0.75  # an untrained model: ~0.5
    assert np.median(own) < 0.35 * np.nanmedian(other)
    assert top_k_rate(d, 1) > 0.5  # chance: 1 / 74
    table = retrieval_table(stack, post, ["hi", "lo"], metric=METRIC)
    uni = table[table["method"] == "unified"]
    assert (uni["top1"] > 0.2).all() and (uni["n_galaxies"] == len(test)).all()


def test_contrastive_term_makes_retrieval_work(trained):
    """The InfoNCE term alone (the other alignment terms off) finds far more galaxies again than no alignment."""
    stack, _, model, _ = trained
    assert PARAMS["contrastive_weight"] > 0
    alone = dict(PARAMS, align_weight=0.0, mean_align_weight=0.0, adversary_weight=0.0)
    top1 = {}
    for name, params in (("contrastive", alone), ("none", dict(alone, contrastive_weight=0.0))):
        m, _, _ = train_unified(stack, params, seed=5, progress=False)
        table = retrieval_table(stack, posteriors(m, stack), ["hi", "lo"], metric=METRIC)
        top1[name] = table.loc[table["method"] == "unified", "top1"].to_numpy()
    base = table.loc[table["method"] == "measured", "top1"].to_numpy()
    table = retrieval_table(stack, posteriors(model, stack), ["hi", "lo"], metric=METRIC)
    top1["default"] = table.loc[table["method"] == "unified", "top1"].to_numpy()
    # measured (hi->lo, lo->hi): none ~0.70 / 0.37, the InfoNCE alone ~0.93 / 0.64, every default term
    # ~0.95 / 0.82; the flux/size/shape baseline 0.46 / 0.41
    assert top1["contrastive"].min() > 0.5 and top1["contrastive"].mean() > top1["none"].mean() + 0.15
    assert top1["default"].min() > 0.6 and (top1["default"] > base + 0.2).all()


def test_translation_beats_identity(trained):
    stack, lo_clean, model, _ = trained
    post = posteriors(model, stack)
    test = np.flatnonzero(stack.split == "test")
    pred = translate(model, post["hi"][0][test], "lo").numpy()
    identity = _rebin(stack.x["hi"][test].numpy())  # the "hi" stamp on the "lo" grid, not blurred
    truth = lo_clean[test]
    err_model = np.mean((pred - truth) ** 2)
    err_identity = np.mean((identity - truth) ** 2)
    assert err_model < 0.7 * err_identity


def test_masking_a_survey_removes_its_loss_and_gradient():
    torch.manual_seed(1)
    stack, _ = _sky(n=8)
    model = UnifiedVAE(stack.shapes(), 4, [4, 8], adversary_hidden=4)
    xs = {s: stack.x[s] for s in stack.surveys}
    ws = {s: stack.w[s] for s in stack.surveys}
    avail = {"hi": torch.ones(8), "lo": torch.tensor([1.0, 0, 1, 0, 1, 1, 1, 1])}

    def loss(x_lo, w_lo, av=avail):
        gen = torch.Generator().manual_seed(3)
        return unified_loss(model, dict(xs, lo=x_lo), dict(ws, lo=w_lo), av, 1.0, gen, align=EVERY_TERM)["loss"]

    garbage_x = xs["lo"].clone()
    garbage_w = ws["lo"].clone()
    garbage_x[[1, 3]] = 50.0
    garbage_w[[1, 3]] = 1e6
    base = loss(xs["lo"], ws["lo"])
    assert torch.allclose(base, loss(garbage_x, garbage_w))  # the masked galaxies' "lo" stamps do not count
    assert not torch.allclose(base, loss(xs["lo"], ws["lo"], dict(avail, lo=torch.ones(8))))
    # and the "lo" encoder gets no gradient from them: only galaxies 1 and 3, all masked
    sel = [1, 3]
    model.zero_grad()
    gen = torch.Generator().manual_seed(3)
    sub = {s: v[sel] for s, v in xs.items()}
    sub_w = {s: v[sel] for s, v in ws.items()}
    out = unified_loss(
        model,
        sub,
        sub_w,
        {"hi": torch.ones(2), "lo": torch.zeros(2)},
        1.0,
        gen,
        align=EVERY_TERM,
    )
    out["loss"].backward()
    enc = [p.grad for n, p in model.nets["lo"].named_parameters() if n.startswith(("encoder", "to_latent"))]
    assert all(g is None or float(g.abs().max()) == 0.0 for g in enc)
    dec = [p.grad for n, p in model.nets["lo"].named_parameters() if n.startswith(("from_latent", "decoder"))]
    assert all(g is None or float(g.abs().max()) == 0.0 for g in dec)


def test_product_of_experts_without_experts_is_the_prior():
    mu = torch.randn(3, 4)
    lv = torch.zeros(3, 4)
    m, v = product_of_experts({"a": (mu, lv)}, {"a": torch.zeros(3)})
    assert torch.allclose(m, torch.zeros(3, 4)) and torch.allclose(v, torch.zeros(3, 4))
    m, v = product_of_experts({"a": (mu, lv)}, {"a": torch.ones(3)})
    assert torch.allclose(m, mu / 2) and torch.allclose(v, torch.full((3, 4), -np.log(2.0)))


def test_unknown_decode_only_survey_is_named():
    with pytest.raises(ValueError, match="halpha"):
        UnifiedVAE({"a": {"bands": 1, "size": 8}}, 2, [4], decode_only=["halpha"])


def test_retrieval_table_columns():
    stack, _ = _sky(n=40)
    model = UnifiedVAE(stack.shapes(), 4, [4, 8])
    table = retrieval_table(stack, posteriors(model, stack), ["hi", "lo"])
    assert set(table["method"]) == {"unified", "measured"}
    assert isinstance(table, pd.DataFrame) and table["top1"].between(0, 1).all()


def test_evaluation_tables_of_an_untrained_model():
    from galmap.unified.evaluate import classification_predictions, invariance_table, translation_table

    torch.manual_seed(2)
    stack, _ = _sky(n=60)
    model = UnifiedVAE(stack.shapes(), 4, [4, 8])
    post = posteriors(model, stack)
    assert set(post) == {"hi", "lo", "joint"}
    trans = translation_table(model, stack, post)
    assert len(trans) == 6 and trans["chi2_nu_median"].gt(0).all()
    assert trans["ssim_median"].isna().eq(trans["target"] == "lo").all()  # 8 px: smaller than the SSIM window
    inv = invariance_table(stack, post, ["hi", "lo"], seed=1, n_estimators=5)
    assert list(inv["latent"]) == ["mean", "draw"] and inv["chance"].eq(0.5).all()
    rng = np.random.default_rng(0)
    targets = pd.DataFrame(
        {"id": stack.ids.astype(str), "question": "q", "class": rng.integers(0, 2, len(stack)),
         "split": np.where(np.arange(len(stack)) < 40, "train", "test")}
    )  # fmt: skip
    preds, problems = classification_predictions(
        targets, post, stack.ids, RF, seed=1, decision="balanced", train_set="hi"
    )
    assert not problems
    for name in ("hi", "lo", "joint"):
        p = preds[name]
        assert len(p) == 20 and set(p["id"]) == set(stack.ids[40:]) and (p["split"] == "test").all()


RF = {"n_estimators": 5, "min_samples_leaf": 1, "max_features": "sqrt"}


def test_contrastive_loss_rewards_matched_pairs_and_ignores_masked_galaxies():
    from galmap.unified.model import contrastive_loss

    torch.manual_seed(4)
    z = torch.randn(16, 16)
    avail = {"a": torch.ones(16), "b": torch.ones(16)}
    for metric in ("cosine", "euclidean"):
        matched = contrastive_loss({"a": z, "b": z + 0.01 * torch.randn(16, 16)}, avail, 0.1, metric)
        shuffled = contrastive_loss({"a": z, "b": z[torch.randperm(16)]}, avail, 0.1, metric)
        assert float(matched) < 0.3 < np.log(16) / 2 < float(shuffled)
    # a galaxy missing from "b" takes no part: its "b" latent can be anything
    masked = dict(avail, b=torch.tensor([1.0] * 12 + [0.0] * 4))
    junk = z.clone()
    junk[12:] = 100.0
    assert torch.allclose(
        contrastive_loss({"a": z, "b": z}, masked, 0.1), contrastive_loss({"a": z, "b": junk}, masked, 0.1)
    )
    # with fewer than two galaxies in common there is nothing to contrast
    one = {"a": torch.ones(16), "b": torch.tensor([1.0] + [0.0] * 15)}
    assert float(contrastive_loss({"a": z, "b": z}, one, 0.1)) == 0.0
    with pytest.raises(ValueError, match="manhattan"):
        contrastive_loss({"a": z, "b": z}, avail, 0.1, "manhattan")


def test_adversary_needs_a_discriminator_and_reverses_the_encoder_gradient():
    from galmap.unified.model import adversary_loss, single_survey_means

    torch.manual_seed(5)
    stack, _ = _sky(n=8)
    xs = {s: stack.x[s] for s in stack.surveys}
    ws = {s: stack.w[s] for s in stack.surveys}
    avail = {s: torch.ones(8) for s in stack.surveys}
    plain = UnifiedVAE(stack.shapes(), 4, [4, 8])
    with pytest.raises(ValueError, match="adversary_hidden"):
        unified_loss(plain, xs, ws, avail, 1.0, torch.Generator().manual_seed(0), align=Alignment(adversary_weight=1.0))
    model = UnifiedVAE(stack.shapes(), 4, [4, 8], adversary_hidden=8)
    grads = {}
    for strength in (0.0, 1.0):
        model.zero_grad()
        adversary_loss(model, single_survey_means(model.experts(xs)), avail, strength).backward()
        grads[strength] = model.nets["hi"].to_latent.weight.grad.clone()
        disc = model.discriminator[0].weight.grad
        assert disc is not None and float(disc.abs().max()) > 0  # the discriminator always learns
    assert float(grads[0.0].abs().max()) == 0.0 and float(grads[1.0].abs().max()) > 0
