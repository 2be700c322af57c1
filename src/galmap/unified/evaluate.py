"""What the unified latent space is for, measured on held-out galaxies.

- **Posteriors per survey set** (:func:`posteriors`): each encoder survey alone
  (``q_s``: the prior times its expert), BASS and MzLS together (``bass+mzls``: the
  north's three bands) and every survey the galaxy has (``joint``).
- **Retrieval** (:func:`retrieval_table`): for every ordered pair of surveys (A, B), each
  test galaxy seen in A looks for itself among the test galaxies seen in B by the
  posterior means (:func:`retrieval_distances`): their cosine distance (``metric =
  "cosine"``, what the contrastive term trains), the Euclidean distance, or
  ``sum_k (mu_A,k - mu_B,k)^2 / (sigma_A,k^2 + sigma_B,k^2)`` (``"chi2"``: latents that
  a survey constrains poorly count less). Top-1 is the fraction found first. The baseline matches
  by measured total flux, half-light radius, axis ratio and position angle alone
  (:func:`measured_features`), each standardised within its survey.
- **Survey invariance** (:func:`invariance_table`): a seeded random forest tries to tell
  the survey from a single-survey latent (5-fold, folds by galaxy), balanced accuracy
  against chance (1 / number of surveys); on the posterior means and on draws from the
  posteriors.
- **Translation** (:func:`translation_table`): survey B decoded from the posterior mean of
  survey A (B = A: the reconstruction), chi2/nu, MSE (asinh scale) and SSIM against B's stamp.
- **Classification** (:func:`classification_predictions`): the classification stage's forest
  (:func:`galmap.classify.targets.random_forest_predictions`, the same settings and seeds)
  trained on the DECaLS latents of its training galaxies and applied, unchanged, to the
  latents of its test galaxies from each survey set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from galmap.nn.imagemetrics import SSIM_RADIUS_PX, ellipse_of, masked_errors, ssim
from galmap.nn.inputs import denormalise
from galmap.nn.training import derived_seed
from galmap.unified.data import SurveyStack
from galmap.unified.model import UnifiedVAE, product_of_experts

JOINT = "joint"


def survey_sets(model: UnifiedVAE) -> dict[str, list[str]]:
    """Name -> encoder surveys: each alone, ``bass+mzls`` when both are there, and all of them (``joint``)."""
    sets = {s: [s] for s in model.encoders}
    if {"bass", "mzls"} <= set(model.encoders):
        sets["bass+mzls"] = ["bass", "mzls"]
    sets[JOINT] = list(model.encoders)
    return sets


@torch.no_grad()
def posteriors(
    model: UnifiedVAE, stack: SurveyStack, batch_size: int = 256
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Survey set -> ``(mu, logvar, has)``: posterior means and log-variances (N, K), and which galaxies have it.

    A galaxy "has" a survey set when it has at least one of its surveys (``joint``: any).
    """
    device = next(model.parameters()).device
    sets = survey_sets(model)
    out: dict[str, list[list[np.ndarray]]] = {name: [[], []] for name in sets}
    for start in range(0, len(stack), batch_size):
        sl = slice(start, start + batch_size)
        xs = {s: stack.x[s][sl].to(device) for s in model.encoders}
        avail = {s: stack.avail[sl, stack.surveys.index(s)].to(device) for s in model.encoders}
        experts = model.experts(xs)
        for name, members in sets.items():
            use = {s: avail[s] if s in members else torch.zeros_like(avail[s]) for s in experts}
            mu, logvar = product_of_experts(experts, use)
            out[name][0].append(mu.cpu().numpy())
            out[name][1].append(logvar.cpu().numpy())
    result = {}
    for name, members in sets.items():
        has = np.zeros(len(stack), bool)
        for s in members:
            has |= stack.has(s)
        result[name] = (np.concatenate(out[name][0]), np.concatenate(out[name][1]), has)
    return result


def latents_table(stack: SurveyStack, post: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """``latents.parquet``: one row per galaxy and survey set it has: ``id, survey, split, mu_*, logvar_*``."""
    parts = []
    for name, (mu, logvar, has) in post.items():
        k = mu.shape[1]
        head = pd.DataFrame({"id": stack.ids[has].astype(str), "survey": name, "split": stack.split[has].astype(str)})
        lat = pd.DataFrame(
            np.hstack([mu[has], logvar[has]]).astype(np.float32),
            columns=[f"mu_{i}" for i in range(k)] + [f"logvar_{i}" for i in range(k)],
        )
        parts.append(pd.concat([head, lat], axis=1))
    return pd.concat(parts, ignore_index=True)


def latent_distances(mu_a: np.ndarray, var_a: np.ndarray, mu_b: np.ndarray, var_b: np.ndarray) -> np.ndarray:
    """(N_a, N_b) ``sum_k (mu_a - mu_b)^2 / (var_a + var_b)`` (dimensionless)."""
    d = np.zeros((len(mu_a), len(mu_b)))
    for k in range(mu_a.shape[1]):  # per latent: (N_a, N_b) at a time, memory O(N^2)
        d += (mu_a[:, k, None] - mu_b[None, :, k]) ** 2 / (var_a[:, k, None] + var_b[None, :, k])
    return d


RETRIEVAL_METRICS = ("cosine", "euclidean", "chi2")


def retrieval_distances(
    mu_a: np.ndarray, logvar_a: np.ndarray, mu_b: np.ndarray, logvar_b: np.ndarray, metric: str = "cosine"
) -> np.ndarray:
    """(N_a, N_b) distances between posteriors by ``metric`` (one of :data:`RETRIEVAL_METRICS`; dimensionless)."""
    if metric == "cosine":
        na = mu_a / np.maximum(np.linalg.norm(mu_a, axis=1, keepdims=True), 1e-12)
        nb = mu_b / np.maximum(np.linalg.norm(mu_b, axis=1, keepdims=True), 1e-12)
        return 1.0 - na @ nb.T
    if metric == "euclidean":
        return ((mu_a[:, None, :] - mu_b[None, :, :]) ** 2).sum(-1)
    if metric == "chi2":
        return latent_distances(mu_a, np.exp(logvar_a), mu_b, np.exp(logvar_b))
    raise ValueError(f"unified: unknown retrieval metric {metric!r} (one of {RETRIEVAL_METRICS})")


def top_k_rate(distance: np.ndarray, k: int = 1) -> float:
    """Fraction of rows whose own column (the diagonal) is among the ``k`` smallest distances (ties count against)."""
    own = np.diag(distance)
    rank = (distance < own[:, None]).sum(1) + (distance == own[:, None]).sum(1) - 1
    return float(np.mean(rank < k)) if len(own) else float("nan")


def _half_light_radius(image: np.ndarray, valid: np.ndarray, xc: float, yc: float) -> float:
    f = np.where(valid, np.clip(image, 0, None), 0.0).ravel()
    total = f.sum()
    if not total > 0:
        return float("nan")
    h, w = image.shape
    y, x = np.mgrid[:h, :w]
    r = np.hypot(x - xc, y - yc).ravel()
    order = np.argsort(r)
    cum = np.cumsum(f[order])
    return float(r[order][np.searchsorted(cum, 0.5 * total)])


def measured_features(stack: SurveyStack, survey: str, rows: np.ndarray) -> np.ndarray:
    """(len(rows), 5) ``log10 flux, log10 r50 (arcsec), q, cos 2PA, sin 2PA`` of the band-summed stamp.

    Flux: the sum over the valid pixels of all bands (image units); r50: the circular
    half-light radius around the light's centroid; q and PA: from the second moments
    (:func:`galmap.nn.imagemetrics.ellipse_of`).
    """
    soft = stack.attrs[survey]["norm_softening"]
    scale = float(stack.attrs[survey]["pixscale_arcsec"])
    img = denormalise(stack.x[survey][torch.as_tensor(rows)], soft).numpy()
    valid = stack.w[survey][torch.as_tensor(rows)].numpy() > 0
    out = np.full((len(rows), 5), np.nan)
    for i in range(len(rows)):
        v = valid[i].any(0)
        summed = np.where(valid[i], img[i], 0).sum(0)
        xc, yc, q, pa = ellipse_of(summed, v)
        flux = summed[v].sum()
        r50 = _half_light_radius(summed, v, xc, yc) * scale
        out[i] = [np.log10(flux) if flux > 0 else np.nan, np.log10(r50) if r50 > 0 else np.nan, q,
                  np.cos(2 * pa), np.sin(2 * pa)]  # fmt: skip
    return out


def _standardise(f: np.ndarray) -> np.ndarray:
    f = np.where(np.isfinite(f), f, np.nanmedian(f, axis=0))
    sd = f.std(0)
    return (f - f.mean(0)) / np.where(sd > 0, sd, 1.0)


def retrieval_table(
    stack: SurveyStack,
    post: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    surveys: Sequence[str],
    split: str = "test",
    metric: str = "cosine",
) -> pd.DataFrame:
    """``retrieval.csv``: per ordered survey pair and method (``unified``, ``measured``), top-1 and top-5 rates.

    ``metric``: the latent distance (:func:`retrieval_distances`), written in the ``metric`` column.
    """
    held = stack.split == split
    feats = {}
    rows = []
    for a in surveys:
        for b in surveys:
            if a == b:
                continue
            both = np.flatnonzero(held & post[a][2] & post[b][2])
            mu_a, lv_a, _ = post[a]
            mu_b, lv_b, _ = post[b]
            d = retrieval_distances(mu_a[both], lv_a[both], mu_b[both], lv_b[both], metric)
            for s in (a, b):
                if s not in feats:
                    idx = np.flatnonzero(held & post[s][2])
                    feats[s] = pd.DataFrame(_standardise(measured_features(stack, s, idx)), index=stack.ids[idx])
            fa, fb = feats[a].loc[stack.ids[both]].to_numpy(), feats[b].loc[stack.ids[both]].to_numpy()
            base = ((fa[:, None, :] - fb[None, :, :]) ** 2).sum(-1)
            for method, dist, how in (("unified", d, metric), ("measured", base, "euclidean")):
                rows.append(
                    {"source": a, "target": b, "method": method, "metric": how, "n_galaxies": len(both),
                     "top1": top_k_rate(dist, 1), "top5": top_k_rate(dist, 5),
                     "chance_top1": 1.0 / max(len(both), 1)}
                )  # fmt: skip
    return pd.DataFrame(rows)


def invariance_table(
    stack: SurveyStack,
    post: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    surveys: Sequence[str],
    seed: int,
    split: str = "test",
    n_estimators: int = 200,
) -> pd.DataFrame:
    """A forest that tells the survey from a single-survey latent: balanced accuracy (5-fold by galaxy) vs chance."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import GroupKFold

    from galmap.core.stats import balanced_accuracy

    held = stack.split == split
    rng = np.random.default_rng(derived_seed(seed, 0x1A7))
    rows = []
    for kind in ("mean", "draw"):
        z, y, g = [], [], []
        for j, s in enumerate(surveys):
            idx = np.flatnonzero(held & post[s][2])
            mu, lv = post[s][0][idx], post[s][1][idx]
            z.append(mu if kind == "mean" else mu + np.exp(0.5 * lv) * rng.standard_normal(mu.shape))
            y.append(np.full(len(idx), j))
            g.append(idx)
        z, y, g = np.concatenate(z), np.concatenate(y), np.concatenate(g)
        if len(np.unique(g)) < 2:  # too few held-out galaxies for a cross-validated probe
            rows.append({"latent": kind, "surveys": "+".join(surveys), "n_latents": len(y), "balanced_accuracy": np.nan,
                         "chance": 1.0 / len(surveys), "above_chance": np.nan})  # fmt: skip
            continue
        pred = np.full(len(y), -1)
        folds = GroupKFold(n_splits=min(5, len(np.unique(g))))
        for k, (tr, te) in enumerate(folds.split(z, y, g)):
            rf = RandomForestClassifier(n_estimators=n_estimators, random_state=derived_seed(seed, 0x1A7, k), n_jobs=1)
            rf.fit(z[tr], y[tr])
            pred[te] = rf.predict(z[te])
        chance = 1.0 / len(surveys)
        acc = balanced_accuracy(y, pred)
        rows.append({"latent": kind, "surveys": "+".join(surveys), "n_latents": len(y), "balanced_accuracy": acc,
                     "chance": chance, "above_chance": acc - chance})  # fmt: skip
    return pd.DataFrame(rows)


@torch.no_grad()
def translate(model: UnifiedVAE, mu: np.ndarray, survey: str, batch_size: int = 256) -> torch.Tensor:
    """Stamps of ``survey`` (asinh scale, on the CPU) decoded from latent vectors ``mu`` (N, K)."""
    device = next(model.parameters()).device
    z = torch.as_tensor(mu, dtype=torch.float32)
    parts = [model.decode(survey, z[i : i + batch_size].to(device)).cpu() for i in range(0, len(z), batch_size)]
    return torch.cat(parts) if parts else torch.zeros((0,))


def translation_table(
    model: UnifiedVAE,
    stack: SurveyStack,
    post: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    split: str = "test",
) -> pd.DataFrame:
    """Per source survey set and target survey: median chi2/nu, MSE and SSIM of the translation on ``split``."""
    held = stack.split == split
    rows = []
    for a, (mu, _, has) in post.items():
        for b in stack.surveys:
            idx = np.flatnonzero(held & has & stack.has(b))
            if not len(idx):
                continue
            sel = torch.as_tensor(idx)
            x, w = stack.x[b][sel], stack.w[b][sel]
            xhat = translate(model, mu[idx], b)
            err = masked_errors(x, xhat, w)
            soft = stack.attrs[b]["norm_softening"]
            if min(x.shape[-2:]) > 2 * SSIM_RADIUS_PX:
                s = ssim(denormalise(x, soft), denormalise(xhat, soft), w > 0).numpy()
            else:  # a stamp smaller than the SSIM window
                s = np.full(x.shape[:2], np.nan)
            ok = np.isfinite(s)
            s_gal = np.where(ok.any(1), np.where(ok, s, 0).sum(1) / np.maximum(ok.sum(1), 1), np.nan)
            rows.append(
                {"source": a, "target": b, "n_galaxies": len(idx),
                 "chi2_nu_median": float(np.nanmedian(err["chi2_nu"].numpy())),
                 "mse_median": float(np.nanmedian(err["mse"].numpy())),
                 "ssim_median": float(np.nanmedian(s_gal)) if np.isfinite(s_gal).any() else np.nan}
            )  # fmt: skip
    return pd.DataFrame(rows)


def classification_predictions(
    targets: pd.DataFrame,
    post: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    ids: np.ndarray,
    rf_params: Mapping[str, object],
    seed: int,
    decision: str,
    train_set: str = "decals",
) -> tuple[dict[str, pd.DataFrame], list[tuple[str, str]]]:
    """Per survey set: the forest's predictions, trained on ``train_set``'s latents of the training galaxies.

    One forest per question (the classification stage's function, settings and seeds) sees
    the training galaxies' ``train_set`` latents; the other galaxies appear once per survey
    set, under the id ``<id>@<set>``, so the same forest answers for every set.
    """
    from galmap.classify.targets import random_forest_predictions

    k = post[train_set][0].shape[1]
    cols = [f"mu_{i}" for i in range(k)]
    ids = np.asarray(ids).astype(str)
    # the forest learns from train_set's latents under the galaxies' own ids (the split is per question, so a
    # galaxy can train one question's forest and test another's); every set's latents also appear as <id>@<set>
    mu0, _, has0 = post[train_set]
    own = pd.DataFrame(mu0[has0], columns=cols)
    own.insert(0, "id", ids[has0])
    lat_parts, tgt_parts = [own], [targets[targets["split"] == "train"]]
    others = targets[targets["split"] != "train"]
    for name, (mu, _, has) in post.items():
        rows = pd.DataFrame(mu[has], columns=cols)
        rows.insert(0, "id", np.char.add(ids[has], f"@{name}"))
        lat_parts.append(rows)
        tgt_parts.append(others.assign(id=others["id"].astype(str) + f"@{name}"))
    latents = pd.concat(lat_parts, ignore_index=True)
    tg = pd.concat(tgt_parts, ignore_index=True)
    preds, problems = random_forest_predictions(tg, latents, rf_params, seed, 1, decision)
    out = {}
    for name in post:
        p = preds[preds["id"].str.endswith(f"@{name}")]
        out[name] = p.assign(id=p["id"].str.slice(0, -len(name) - 1))
    # a galaxy without a stamp in a survey set has no latents there: not a failure of the galaxy
    problems = [(g.split("@")[0], why) for g, why in problems if "@" not in g]
    return out, problems
