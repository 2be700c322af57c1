"""The structure stage: Sérsic fits and non-parametric morphometry of preprocessed shards.

:func:`fit_sersic_shard` fits every galaxy of a shard with the batched
:class:`galmap.structure.sersic.SersicFitter` and returns one row per galaxy and band
(``id, band, n, n_err, re_arcsec, re_err, q, q_err, pa_deg, pa_err_deg, mag,
mag_err, flux, flux_err, chi2_nu, flag, ...``); the shape (centre, n, Re, q, PA) is
shared by all bands (``shape_shared = True``), only the flux is per band.

:func:`morphometry_shard` measures statmorph's Gini, M20, concentration, asymmetry,
smoothness and friends in one band with the survey PSF, the preprocessing segment
and the inverse-variance-derived weight map, one row per galaxy.

Every input galaxy gets its rows; those that cannot be measured (no data, no source in
the segmentation, a diverging fit, a statmorph error or catastrophic flag) get NaN
values, a flag, and a row in the failures log with the reason.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from galmap.core.failures import FailureLog
from galmap.core.io import Shard
from galmap.core.surveys import galaxy_psfs
from galmap.preprocess.flags import FLAGS as PRE_FLAGS
from galmap.structure.flags import SERSIC_FLAGS
from galmap.structure.parameters import MORPH_PARAMETERS
from galmap.structure.sersic import SersicFitter

log = logging.getLogger("galmap")

SERSIC_COLUMNS = [
    "id", "band", "n", "n_err", "re_arcsec", "re_err", "q", "q_err", "pa_deg", "pa_err_deg",
    "mag", "mag_err", "flux", "flux_err", "x0_px", "y0_px", "sky", "chi2_nu", "n_iter", "flag",
    "shape_shared",
]  # fmt: skip

MORPH_COLUMNS = ["id", "band", *MORPH_PARAMETERS, "flag"]

SERSIC_DEFAULTS = {"batch_size": 128, "fit_sky": True, "max_iter": 40, "device": None}


def _flux_to_mag(flux: np.ndarray, err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(flux > 0, 22.5 - 2.5 * np.log10(flux), np.nan)
        mag_err = np.where(flux > 0, 2.5 / np.log(10) * err / flux, np.nan)
    return mag, mag_err


def fit_sersic_shard(
    shard: Shard, params: Mapping[str, Any] | None = None, failures: FailureLog | None = None
) -> pd.DataFrame:
    """Fit one Sérsic per galaxy (shape shared across bands) to a preprocessed shard.

    Parameters
    ----------
    shard : a preprocessed shard (``images`` in the band's flux unit, ``ivar`` with 0 on
        masked pixels, ``segmap``, ``flags`` and ``psf_profile`` or ``psf``). Each galaxy is
        fitted with its own PSF where the shard has one (:func:`galaxy_psfs`: ``psf_fwhm`` from
        the catalogue, or a per-galaxy ``psf_profile``), else with the survey's nominal PSF.
    params : ``batch_size`` (galaxies fitted together), ``fit_sky`` (a constant sky per
        band), ``max_iter``, ``device`` (``None``: cuda when present).

    Returns
    -------
    One row per galaxy and band, in shard order (columns :data:`SERSIC_COLUMNS`);
    ``re_arcsec`` is the half-light semi-major axis in arcsec, magnitudes are AB
    (``22.5 - 2.5 log10(flux / nanomaggy)``).
    """
    p = SERSIC_DEFAULTS | dict(params or {})
    n_gal, nb, h, w = shard.images.shape
    psf = shard.extra.get("psf_profile", shard.extra.get("psf"))
    if psf is None:
        raise ValueError(f"shard of survey {shard.attrs.get('survey')} has no PSF: run preprocessing first")
    pre_flags = shard.extra.get("flags", np.zeros(n_gal, np.int32))
    skip = (pre_flags & (PRE_FLAGS["no_data"] | PRE_FLAGS["no_central_source"])) > 0
    psf = np.asarray(psf)
    nominal = psf if psf.ndim == 3 else psf[0]
    fitter = SersicFitter(nominal, (h, w), fit_sky=bool(p["fit_sky"]), max_iter=int(p["max_iter"]), device=p["device"])
    scale = float(shard.attrs["pixscale_arcsec"])
    out = {k: np.full((n_gal, nb), np.nan) for k in ("flux", "flux_err", "sky")}
    out |= {k: np.full(n_gal, np.nan) for k in ("n", "n_err", "re", "re_err", "q", "q_err", "pa", "pa_err")}
    out |= {k: np.full(n_gal, np.nan) for k in ("x0", "y0", "chi2_nu")}
    n_iter = np.zeros(n_gal, np.int64)
    flag = np.where(skip, SERSIC_FLAGS["skipped"], 0).astype(np.int64)
    todo = np.nonzero(~skip)[0]
    batch = max(1, int(p["batch_size"]))
    for start in tqdm(range(0, len(todo), batch), desc="sersic", unit="batch", mininterval=2):
        idx = todo[start : start + batch]
        seg = shard.extra.get("segmap")
        own = galaxy_psfs(shard, idx, nominal.shape[-1])
        fit = fitter.fit(shard.images[idx], shard.ivar[idx], None if seg is None else seg[idx], psf=own)
        for key, value in (
            ("n", fit.n), ("n_err", fit.n_err), ("re", fit.re_px * scale), ("re_err", fit.re_err_px * scale),
            ("q", fit.q), ("q_err", fit.q_err), ("pa", fit.pa_deg), ("pa_err", fit.pa_err_deg),
            ("x0", fit.x0), ("y0", fit.y0), ("chi2_nu", fit.chi2_nu), ("flux", fit.flux),
            ("flux_err", fit.flux_err), ("sky", fit.sky),
        ):  # fmt: skip
            out[key][idx] = value
        n_iter[idx] = fit.n_iter
        flag[idx] = fit.flag
    # a fit that diverged (non-finite result) is a failure; its numbers are not reported
    diverged = ~skip & ~(np.isfinite(out["n"]) & np.isfinite(out["re"]) & np.isfinite(out["flux"]).all(1))
    for i in np.nonzero(diverged)[0]:
        for key in out:
            out[key][i] = np.nan
    if failures is not None:
        survey = shard.attrs.get("survey", "?")
        for i in np.nonzero(skip)[0]:
            why = "no valid pixel" if pre_flags[i] & PRE_FLAGS["no_data"] else "no source in the segmentation"
            failures.add(shard.ids[i], f"sersic ({survey}): not fitted, {why}")
        for i in np.nonzero(diverged)[0]:
            failures.add(shard.ids[i], f"sersic ({survey}): the fit diverged (non-finite parameters)")
        for i in np.nonzero(~skip & ~diverged & ((flag & SERSIC_FLAGS["no_data"]) > 0))[0]:
            failures.add(shard.ids[i], f"sersic ({survey}): nothing to fit (no positive flux)")
    mag, mag_err = _flux_to_mag(out["flux"], out["flux_err"])
    bands = shard.bands
    rows = pd.DataFrame(
        {
            "id": np.repeat(np.asarray(shard.ids, dtype=str), nb),
            "band": np.tile(bands, n_gal),
            "n": np.repeat(out["n"], nb),
            "n_err": np.repeat(out["n_err"], nb),
            "re_arcsec": np.repeat(out["re"], nb),
            "re_err": np.repeat(out["re_err"], nb),
            "q": np.repeat(out["q"], nb),
            "q_err": np.repeat(out["q_err"], nb),
            "pa_deg": np.repeat(out["pa"], nb),
            "pa_err_deg": np.repeat(out["pa_err"], nb),
            "mag": mag.ravel(),
            "mag_err": mag_err.ravel(),
            "flux": out["flux"].ravel(),
            "flux_err": out["flux_err"].ravel(),
            "x0_px": np.repeat(out["x0"], nb),
            "y0_px": np.repeat(out["y0"], nb),
            "sky": out["sky"].ravel(),
            "chi2_nu": np.repeat(out["chi2_nu"], nb),
            "n_iter": np.repeat(n_iter, nb),
            "flag": np.repeat(np.where(diverged, flag | SERSIC_FLAGS["not_converged"], flag), nb),
            "shape_shared": True,
        }
    )
    return rows[SERSIC_COLUMNS]


# --------------------------------------------------------------------------- morphometry


@functools.cache
def _statmorph_class():
    from statmorph.statmorph import SourceMorphology

    class _Morphometry(SourceMorphology):
        """statmorph's measurements, computing only the quantities galmap reports.

        statmorph evaluates every quantity (MID statistics, a Sérsic fit, ...) when an
        object is made; the subset here is what the pipeline uses, with statmorph's own
        code and flags, at about half the cost.
        """

        def _calculate_morphology(self) -> None:
            for name in MORPH_PARAMETERS:
                _ = self[name]

    return _Morphometry


def _measure_one(args: tuple) -> tuple[dict[str, float], str | None]:
    _gid, image, ivar, segmap, mask, psf = args
    values = {k: np.nan for k in MORPH_PARAMETERS} | {"flag": 4}
    if not segmap.any():
        return values, "no source in the segmentation"
    if not (ivar > 0).any():
        return values, "no valid pixel"
    weight = np.where(ivar > 0, 1.0 / np.sqrt(np.maximum(ivar, 1e-30)), 0.0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            morph = _statmorph_class()(
                image.astype(np.float64),
                segmap.astype(np.int32),
                1,
                mask=mask | (ivar <= 0),
                weightmap=weight,
                psf=psf,
            )
    except Exception as exc:  # noqa: BLE001 - statmorph raises many types; recorded per galaxy
        return values, f"statmorph failed: {type(exc).__name__}: {exc}"
    values = {k: float(morph[k]) for k in MORPH_PARAMETERS} | {"flag": int(morph.flag)}
    if morph.flag >= 4:
        return values, "statmorph flag 4 (catastrophic)"
    return values, None


#: The morphometry implementations (``structure.morphometry``): the batched PyTorch one
#: (:func:`galmap.structure.morphometry.measure_batched`) and statmorph itself, the reference.
MORPHOMETRY_METHODS = ("batched", "statmorph")


def morphometry_shard(
    shard: Shard, band: str, failures: FailureLog | None = None, processes: int = 1, method: str = "batched"
) -> pd.DataFrame:
    """statmorph's morphometry of every galaxy of a preprocessed shard in ``band``.

    Uses the galaxy's segment (``segmap``), the neighbour mask and the weight map
    ``1 / sqrt(ivar)``; ``processes`` > 1 spreads the galaxies over worker processes.
    ``method``: ``"batched"`` (:func:`galmap.structure.morphometry.measure_batched`, the same
    definitions, all galaxies at once in PyTorch) or ``"statmorph"`` (one galaxy at a time,
    with the effective PSF ``psf``). Returns one row per galaxy (columns :data:`MORPH_COLUMNS`);
    statmorph's ``flag`` is kept (0 good, 1 suspect, 2 bad, 4 catastrophic), and galaxies
    that raise or are catastrophic are logged in ``failures``.
    """
    if band not in shard.bands:
        raise ValueError(f"band {band!r} is not in survey {shard.attrs.get('survey')} ({', '.join(shard.bands)})")
    if method not in MORPHOMETRY_METHODS:
        raise ValueError(f"unknown morphometry method {method!r} ({', '.join(MORPHOMETRY_METHODS)})")
    j = shard.bands.index(band)
    mask = shard.extra.get("mask", np.zeros(shard.images.shape[:1] + shard.images.shape[2:], bool))
    if method == "batched":
        from galmap.structure.morphometry import measure_batched

        table, errors = measure_batched(
            shard.images[:, j], shard.ivar[:, j], shard.extra["segmap"], mask, processes=processes
        )
        ids = np.asarray(shard.ids, dtype=str)
        results = [(dict(row), err) for row, err in zip(table.to_dict("records"), errors, strict=True)]
        return _morphometry_table(shard, band, ids, results, failures)
    psf = shard.extra["psf"][j].astype(np.float64)
    work = [
        (shard.ids[i], shard.images[i, j], shard.ivar[i, j], shard.extra["segmap"][i], mask[i], psf)
        for i in range(len(shard.ids))
    ]
    if processes > 1:
        with ProcessPoolExecutor(processes) as pool:
            results = list(tqdm(pool.map(_measure_one, work, chunksize=16), total=len(work), desc="statmorph"))
    else:
        results = [_measure_one(w) for w in tqdm(work, desc="statmorph", mininterval=2)]
    return _morphometry_table(shard, band, [w[0] for w in work], results, failures)


def _morphometry_table(
    shard: Shard, band: str, ids, results: list[tuple[dict, str | None]], failures: FailureLog | None
) -> pd.DataFrame:
    """The morphometry table of ``ids`` from per-galaxy ``(values, error)``; errors go to ``failures``."""
    rows = []
    for gid, (values, error) in zip(ids, results, strict=True):
        rows.append({"id": str(gid), "band": band} | values)
        if error and failures is not None:
            failures.add(gid, f"morphometry ({shard.attrs.get('survey')} {band}): {error}")
    # typed columns also for an empty shard, so its table concatenates with the others unchanged
    types = {"id": str, "band": str, "flag": "int64"} | {k: "float64" for k in MORPH_PARAMETERS}
    return pd.DataFrame(rows, columns=MORPH_COLUMNS).astype(types)
