"""The unified model's translations scored as the dedicated models of the same run score theirs.

- SDSS → Hα (:func:`halpha_scores`): the Hα stage's own evaluation
  (:func:`galmap.images2images.halpha.evaluate_maps`: pixel correlation inside the aperture,
  total-flux scatter against the truth) of Hα maps decoded from the SDSS-only latents of the
  Hα stage's held-out galaxies. Galaxies in the unified model's training split are left out
  (none are when both use the same seed and fractions).
- DECaLS → Euclid (:func:`euclid_re_scatter`): the super-resolution stage's size measure
  (a Sérsic fit, :func:`galmap.images2images.superres.fit_re`, on the Euclid stamp binned
  ``target_bin`` and cropped to ``target_px``) of Euclid stamps decoded from the DECaLS-only
  latents, against the Re of the real Euclid stamps in ``superres/re_compare.parquet``:
  the robust scatter of log10(Re ratio), in dex, next to that of the stage's models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from galmap.core.failures import FailureLog
from galmap.core.io import read_shard
from galmap.core.stats import robust_std
from galmap.nn.inputs import denormalise
from galmap.structure.flags import SERSIC_FLAGS
from galmap.unified.data import SurveyStack
from galmap.unified.evaluate import translate
from galmap.unified.model import UnifiedVAE


def halpha_scores(
    model: UnifiedVAE,
    stack: SurveyStack,
    post: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    input_paths: Sequence[str],
    target_paths: Sequence[str],
    params: Mapping[str, Any],
    seed: int,
    truth: pd.DataFrame | None,
    source: str = "sdss",
    target: str = "halpha",
) -> pd.DataFrame:
    """The Hα stage's metrics table of the maps decoded from ``source``'s latents (one row per subset)."""
    from galmap.images2images.halpha import evaluate_maps, load_pairs

    data = load_pairs(input_paths, target_paths, params, seed)
    row = {g: i for i, g in enumerate(stack.ids.astype(str))}
    mu, _, has = post[source]
    test_ids = data.ids[data.split == "test"].astype(str)
    usable = np.array([g in row and has[row[g]] and stack.split[row[g]] != "train" for g in test_ids])
    if not usable.any():
        raise ValueError(f"unified: none of the Hα stage's {len(test_ids)} held-out galaxies is held out here")
    keep = np.isin(data.ids.astype(str), test_ids[usable]) | (data.split != "test")
    data.split = np.where(keep, data.split, "unused")
    idx = [row[g] for g in data.ids[data.split == "test"].astype(str)]
    xhat = translate(model, mu[idx], target)
    soft = [float(stack.attrs[target]["norm_softening"][0])]
    if not np.isclose(soft[0], data.softening):
        raise ValueError(f"unified: the {target} softening {soft[0]} differs from the Hα stage's {data.softening}")
    pred = denormalise(xhat, soft).numpy()[:, 0]
    metrics, _, _ = evaluate_maps(data, pred, dict(params, n_examples=0), truth, FailureLog("unified"), 0.0, 0.0)
    return metrics.assign(n_left_out=int((~usable).sum()))


def euclid_re_scatter(
    model: UnifiedVAE,
    stack: SurveyStack,
    post: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    re_compare: pd.DataFrame,
    superres_metrics: pd.DataFrame,
    euclid_paths: Sequence[str],
    params: Mapping[str, Any],
    source: str = "decals",
    target: str = "euclid",
) -> pd.DataFrame:
    """Re scatter (dex) of the ``source`` → ``target`` translation against the real Euclid Re, beside the stage's."""
    from galmap.images2images.superres import bin_psf, bin_stamps, crop_centre, fit_re

    row = {g: i for i, g in enumerate(stack.ids.astype(str))}
    mu, _, has = post[source]
    t = re_compare[np.isfinite(re_compare["re_euclid_arcsec"])]
    ok = np.array([g in row and has[row[g]] and stack.split[row[g]] != "train" for g in t["id"].astype(str)])
    t = t[ok]
    if not len(t):
        raise ValueError("unified: none of the super-resolution stage's held-out galaxies is held out here")
    idx = np.array([row[g] for g in t["id"].astype(str)], dtype=int)
    bin_, size = int(params["target_bin"]), int(params["target_px"])
    soft = stack.attrs[target]["norm_softening"]
    flux = denormalise(translate(model, mu[idx], target), soft).numpy()
    # the real stamps' inverse variance weighs the fit, as in the super-resolution stage
    shards = [read_shard(p, ("psf",)) for p in euclid_paths]
    where = {str(g): (k, i) for k, sh in enumerate(shards) for i, g in enumerate(sh.ids)}
    ivar = np.stack([shards[where[g][0]].ivar[where[g][1]] for g in t["id"].astype(str)]).astype(np.float32)
    ivar = np.where(np.isfinite(ivar) & (ivar > 0), ivar, 0).astype(np.float32)
    full = flux.shape[-1] // bin_
    margin = ((full - size) // 2) * bin_
    fb, ib = bin_stamps(flux[..., margin:, margin:], ivar[..., margin:, margin:], bin_)
    fb, ib = crop_centre(fb, size), crop_centre(ib, size)
    psf = bin_psf(shards[0].extra["psf"], bin_)
    scale = float(stack.attrs[target]["pixscale_arcsec"]) * bin_
    re, flag = fit_re(fb, ib, psf, scale, params)
    ratio = np.log10(re / t["re_euclid_arcsec"].to_numpy())
    bad_flags = SERSIC_FLAGS["no_data"] | SERSIC_FLAGS["at_bound"]  # the stage's rule for a failed fit
    good = np.isfinite(ratio) & (re > 0) & ((flag & bad_flags) == 0)
    rows = [{"method": f"unified_{source}", "n_galaxies": int(good.sum()),
             "re_log_ratio_median": float(np.median(ratio[good])) if good.any() else np.nan,
             "re_log_scatter_dex": robust_std(ratio[good])}]  # fmt: skip
    for _, r in superres_metrics.iterrows():
        if r["method"] != "euclid":
            rows.append({"method": f"superres_{r['method']}", "n_galaxies": int(r["n_galaxies"]),
                         "re_log_ratio_median": float(r["re_log_ratio_median"]),
                         "re_log_scatter_dex": float(r["re_log_scatter_dex"])})  # fmt: skip
    return pd.DataFrame(rows)
