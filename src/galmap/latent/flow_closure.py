"""Parameters -> images -> parameters: generate galaxies with the flow and the VAE, measure them again.

:func:`generate_images` samples latents for requested parameters
(:func:`galmap.latent.flow.sample_latents`) and decodes them with the VAE into images
in the survey's flux unit (nanomaggies), optionally with the survey's sky noise
added (an "observation" of the generated galaxy). :func:`measure_parameters`
measures any such images with the pipeline's own code: the preprocessing
(detection, segmentation, background), the batched Sérsic fit and statmorph,
then :func:`galmap.structure.parameters.parameter_table`. :func:`closure_table` and
:func:`closure_summary` compare requested and measured values; :func:`gallery`
varies one parameter at a time about the population's median.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats

from galmap.core.failures import FailureLog
from galmap.core.io import Shard
from galmap.core.stats import robust_std
from galmap.latent.flow import ConditionalFlow, sample_latents
from galmap.latent.vae import ConvVAE
from galmap.preprocess.stamps import denormalise, preprocess_shard, sky_sigma
from galmap.structure.measure import fit_sersic_shard, morphometry_shard
from galmap.structure.parameters import parameter_table

log = logging.getLogger("galmap")

#: Attributes a preprocessed shard adds; a generated "raw" shard does not carry them.
_PREPROCESSED_ATTRS = ("norm", "norm_softening", "flag_bits", "preprocessed")


@torch.no_grad()
def decode_images(vae: ConvVAE, latents: np.ndarray, softening: Sequence[float], batch_size: int = 256) -> np.ndarray:
    """Images (N, B, H, W) in image units (nanomaggies) of latent vectors (N, K)."""
    device = next(vae.parameters()).device
    out = []
    for start in range(0, len(latents), batch_size):
        z = torch.as_tensor(latents[start : start + batch_size], dtype=torch.float32, device=device)
        with np.errstate(over="ignore"):  # overflows become inf: the caller reports them
            out.append(denormalise(vae.decode(z).cpu().numpy(), softening))
    return np.concatenate(out) if out else np.zeros((0, vae.in_channels, vae.image_size, vae.image_size), np.float32)


def generate_images(
    flow: ConditionalFlow,
    vae: ConvVAE,
    params: np.ndarray,
    template: Shard,
    seed: int | None,
    sample: bool = True,
    add_noise: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Images and their inverse variance for parameters (N, P) in the flow's parameter order.

    ``template`` is a preprocessed shard of the VAE's survey (its ``norm_softening``
    and noise level). ``seed`` seeds the flow's base noise (``sample``; otherwise the
    central latent, zero base noise, is decoded) and the pixel noise (``add_noise``);
    ``None`` means the central latent and no noise. A latent sample far
    outside the training latents can decode to pixels beyond float32 (inf); such
    images are returned as they are, and :func:`measure_parameters` reports them.
    """
    latents = sample_latents(flow, params, seed if sample else None)
    images = decode_images(vae, latents, template.attrs["norm_softening"]).astype(np.float32)
    sigma = np.asarray(sky_sigma(template.attrs, template.ivar))
    ivar = np.broadcast_to((1.0 / sigma**2)[None, :, None, None], images.shape).astype(np.float32).copy()
    if add_noise and seed is not None:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC105]))
        images = images + (rng.standard_normal(images.shape) * sigma[None, :, None, None]).astype(np.float32)
    return images, ivar


def measure_parameters(
    images: np.ndarray,
    ivar: np.ndarray,
    ids: Sequence[str],
    attrs: Mapping[str, Any],
    names: Sequence[str],
    preprocess_params: Mapping[str, Any],
    structure_params: Mapping[str, Any],
    failures: FailureLog | None = None,
    processes: int = 1,
) -> tuple[pd.DataFrame, pd.Series]:
    """Measure parameters ``names`` of images (N, B, H, W) with the pipeline's preprocessing and structure code.

    ``attrs`` are the survey's shard attributes (bands, pixel scale, PSF). Returns
    :func:`galmap.structure.parameters.parameter_table`'s ``(table, reasons)``.
    """
    raw_attrs = {k: v for k, v in attrs.items() if k not in _PREPROCESSED_ATTRS}
    if failures is not None:
        for gid, finite in zip(ids, np.isfinite(images).all(axis=(1, 2, 3)), strict=True):
            if not finite:
                failures.add(gid, "the image has non-finite pixels (a decoded latent far outside the training set)")
    shard = Shard(
        np.asarray(images, np.float32), np.asarray(ivar, np.float32), np.asarray(ids, dtype=object), raw_attrs
    )
    pre = preprocess_shard(shard, preprocess_params, failures)
    sersic = fit_sersic_shard(pre, structure_params, failures)
    morph = morphometry_shard(
        pre, structure_params["morph_band"], failures, processes, structure_params.get("morphometry", "batched")
    )
    return parameter_table(sersic, morph, names)


def closure_table(
    requested: pd.DataFrame, measured: pd.DataFrame, names: Sequence[str], latent: str = "sampled"
) -> pd.DataFrame:
    """Long table ``id, latent, parameter, requested, measured`` (measured NaN where the measurement failed).

    ``measured`` is matched to ``requested`` row by row by ``id``; ``latent`` names how the
    latents were drawn (``sampled``: random base noise; ``central``: zero base noise).
    """
    m = measured.set_index("id").reindex(requested["id"].astype(str))
    rows = [
        pd.DataFrame(
            {
                "id": requested["id"].astype(str).to_numpy(),
                "latent": latent,
                "parameter": name,
                "requested": requested[name].to_numpy(dtype=np.float64),
                "measured": m[name].to_numpy(dtype=np.float64),
            }
        )
        for name in names
    ]
    return pd.concat(rows, ignore_index=True)


def closure_summary(closure: pd.DataFrame) -> pd.DataFrame:
    """Per latent kind and parameter: numbers requested and measured, Spearman r (and p), median and NMAD of
    measured - requested."""
    rows = []
    for (latent, name), grp in closure.groupby(["latent", "parameter"], sort=False):
        ok = np.isfinite(grp["requested"]) & np.isfinite(grp["measured"])
        req, mea = grp.loc[ok, "requested"].to_numpy(), grp.loc[ok, "measured"].to_numpy()
        if ok.sum() >= 3 and np.ptp(req) > 0 and np.ptp(mea) > 0:
            r, p = stats.spearmanr(req, mea)
        else:
            r, p = np.nan, np.nan
        diff = mea - req
        med = float(np.median(diff)) if len(diff) else np.nan
        nmad = robust_std(diff)
        rows.append(
            {
                "latent": latent,
                "parameter": name,
                "n_requested": len(grp),
                "n_measured": int(ok.sum()),
                "spearman_r": float(r),
                "spearman_p": float(p),
                "median_difference": med,
                "nmad_difference": nmad,
            }
        )
    return pd.DataFrame(rows)


def gallery_values(train_params: pd.DataFrame, names: Sequence[str], vary: Sequence[str], steps: int) -> np.ndarray:
    """Parameter grid (len(vary), steps, P): the training medians, one parameter stepping 5th -> 95th percentile."""
    median = train_params[list(names)].median().to_numpy(dtype=np.float64)
    grid = np.repeat(median[None, None, :], len(vary), axis=0).repeat(steps, axis=1)
    for i, name in enumerate(vary):
        j = list(names).index(name)
        lo, hi = np.nanpercentile(train_params[name], [5, 95])
        grid[i, :, j] = np.linspace(lo, hi, steps)
    return grid
