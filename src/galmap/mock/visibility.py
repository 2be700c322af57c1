"""How visible each mock galaxy's features are in the survey image volunteers see.

A feature's visibility is its signal-to-noise in the image: the χ² between
noiseless renders of the galaxy with and without it, at the survey's PSF, pixel
scale, stamp and depth, summed over the survey's bands,

    S/N = sqrt( sum_b sum_pix (I_with - I_without)^2 / var_b ),
    var_b = sigma_sky,b^2 + max(I_galaxy, 0) / gain       (the mock's own noise model).

"Without" means the feature's light spread smoothly: a bar or spiral arms are
compared with the same flux in the exponential disk (the galaxy keeps its
brightness, loses its structure); a companion with its tidal features is simply
removed. Every component is drawn once, unit flux, in the reference band r with
the r PSF (:class:`galmap.mock.render.Components`), and scaled by its flux in
each band (the PSF's change with band is neglected). Columns (dimensionless;
0 where the galaxy lacks the feature): ``snr_bar``, ``snr_arms``, ``snr_merger``, and for the
first question (smooth or featured, issue 27):

* ``snr_clumps``: star-forming clumps against the same flux in the disk;
* ``snr_thin_disk``: the disk against the same disk no flatter than the flattest ellipticals
  (axis ratio :data:`THIN_DISK_Q`, E7; 0 for disks rounder than that): what tells an edge-on disk
  from a smooth elongated galaxy;
* ``snr_featured``: everything that makes a disk galaxy look "featured or disk" at once — the
  galaxy against the same galaxy with all its disk structure (bar, arms, clumps: every central
  component but the bulge and the disk) spread into the disk and the disk thickened to
  :data:`THIN_DISK_Q`. The bulge stays: a bulge and a smooth disk look smooth.

:func:`visible_answers` turns them into the answers of an ideal volunteer who sees only
what the image shows (``visible_<question>``): a feature below ``snr_threshold`` is
not seen (bar "no", spiral arms "no" with no winding or count, merging "none"; a featured
galaxy whose ``snr_featured`` is below it looks "smooth"). Each feature's visible answer is
its own: a bar seen in a galaxy that looks smooth overall keeps ``visible_bar``.
"""

from __future__ import annotations

from collections.abc import Mapping

import galsim
import numpy as np
import pandas as pd

from galmap.core.surveys import GSPARAMS, Survey
from galmap.mock.render import GalaxyModel
from galmap.mock.systematics import galaxy_psf

#: The questions whose visible answer can differ from the physical one, and the S/N column each uses.
FEATURE_SNR = {
    "bar": "snr_bar",
    "has-spiral-arms": "snr_arms",
    "spiral-winding": "snr_arms",
    "spiral-arm-count": "snr_arms",
    "merging": "snr_merger",
    "smooth-or-featured": "snr_featured",
}

#: The flattest ellipticals are E7 (axis ratio 0.3; Hubble 1926, 1936): a disk seen flatter than that
#: cannot pass for a smooth galaxy, one rounder can (``snr_thin_disk``).
THIN_DISK_Q = 0.3

#: Central components that are not disk structure (what stays when the structure is smoothed away).
SMOOTH_COMPONENTS = ("bulge", "disk")


def _unit_image(obj: galsim.GSObject, psf: galsim.GSObject, survey: Survey) -> np.ndarray:
    n = survey.stamp_px
    return galsim.Convolve(obj, psf).drawImage(nx=n, ny=n, scale=survey.pixscale_arcsec).array


def galaxy_feature_snr(model: GalaxyModel, survey: Survey, ref_band: str = "r") -> dict[str, float]:
    """``snr_bar``, ``snr_arms``, ``snr_merger``, ``snr_clumps``, ``snr_thin_disk``, ``snr_featured``
    of one galaxy in ``survey`` (module docstring)."""
    # the PSF the galaxy was observed through (its own when mock.systematics.psf varies it, else the nominal one)
    psf = galaxy_psf(model.row, survey, ref_band if ref_band in survey.bands else survey.bands[0])
    central = model.components.central
    shapes = {name: _unit_image(obj, psf, survey) for name, obj in central.items()}
    c = model.components
    row = model.row
    if c.companion is not None:
        shapes["companion"] = _unit_image(c.companion, psf, survey)
        shapes["tidal"] = _unit_image(c.tidal, psf, survey)
    structure = [k for k in central if k not in SMOOTH_COMPONENTS]
    thin = "disk" in central and float(row["disk_q"]) < THIN_DISK_Q
    if thin:  # the same disk (major-axis scale, orientation, flux) at the flattest elliptical's axis ratio
        h, pa = float(row["disk_h_arcsec"]), float(row["disk_pa_deg"])
        thick = galsim.Exponential(scale_radius=h * np.sqrt(THIN_DISK_Q), gsparams=GSPARAMS).shear(
            q=THIN_DISK_Q, beta=pa * galsim.degrees
        )
        shapes["thick_disk"] = _unit_image(thick, psf, survey)
    cols = ("snr_bar", "snr_arms", "snr_merger", "snr_clumps", "snr_thin_disk", "snr_featured")
    chi2 = dict.fromkeys(cols, 0.0)
    for j, band in enumerate(survey.bands):
        flux = model.component_fluxes(band)
        total_central = sum(flux.values())
        image = sum(flux[k] * shapes[k] for k in central)
        merger = 0.0
        if c.companion is not None:
            merger = total_central * (
                float(row["companion_flux_ratio"]) * shapes["companion"] + float(row["tidal_frac"]) * shapes["tidal"]
            )
            image = image + merger
        var = survey.sky_sigma[j] ** 2 + np.maximum(image, 0.0) / survey.gain_e_per_nmgy
        for name, col in (("bar", "snr_bar"), ("arms", "snr_arms"), ("clumps", "snr_clumps")):
            if name in shapes and "disk" in shapes and flux.get(name, 0.0) > 0:
                chi2[col] += float(np.sum((flux[name] * (shapes[name] - shapes["disk"])) ** 2 / var))
        if c.companion is not None:
            chi2["snr_merger"] += float(np.sum(merger**2 / var))
        if "disk" in central:
            smooth_shape = shapes["thick_disk"] if thin else shapes["disk"]
            if thin:
                chi2["snr_thin_disk"] += float(np.sum((flux["disk"] * (shapes["disk"] - smooth_shape)) ** 2 / var))
            with_structure = sum(flux[k] * shapes[k] for k in ("disk", *structure))
            smoothed = sum(flux[k] for k in ("disk", *structure)) * smooth_shape
            chi2["snr_featured"] += float(np.sum((with_structure - smoothed) ** 2 / var))
    return {k: float(np.sqrt(v)) for k, v in chi2.items()}


def feature_snr(
    truth: pd.DataFrame, survey: Survey, seed: int, field_arcsec: float, processes: int = 1
) -> pd.DataFrame:
    """:func:`galaxy_feature_snr` of every galaxy of ``truth`` (index kept); a galaxy GalSim cannot
    draw raises, naming it. ``processes`` > 1 spreads contiguous blocks of galaxies over worker
    processes (each galaxy's drawing is seeded by itself, so the result does not depend on it)."""
    if processes > 1 and len(truth) > 1:
        from concurrent.futures import ProcessPoolExecutor

        blocks = np.array_split(np.arange(len(truth)), min(processes, len(truth)))
        with ProcessPoolExecutor(len(blocks)) as pool:
            n = len(blocks)
            parts = pool.map(feature_snr, [truth.iloc[b] for b in blocks], [survey] * n, [seed] * n, [field_arcsec] * n)
            return pd.concat(list(parts))
    rows = []
    for row in truth.to_dict("records"):
        try:
            rows.append(galaxy_feature_snr(GalaxyModel(row, seed, field_arcsec), survey))
        except Exception as exc:
            raise RuntimeError(f"feature visibility of galaxy {row['id']} could not be drawn: {exc!r}") from exc
    return pd.DataFrame(rows, index=truth.index)


def visible_answers(
    truth: pd.DataFrame, snr_threshold: float, featured_snr_threshold: float | None = None
) -> pd.DataFrame:
    """``visible_<question>`` for :data:`FEATURE_SNR`'s questions: the ``true_`` answer where the
    feature's S/N reaches ``snr_threshold``, else what an ideal volunteer sees (no bar, no arms, no merger,
    a smooth galaxy). ``featured_snr_threshold``: the first question's own threshold (``None``: ``snr_threshold``)."""
    out = {}
    seen = {col: truth[col].to_numpy(float) >= snr_threshold for col in set(FEATURE_SNR.values())}
    if featured_snr_threshold is not None:
        seen["snr_featured"] = truth["snr_featured"].to_numpy(float) >= float(featured_snr_threshold)
    arms_asked = truth["true_has-spiral-arms"].to_numpy() != ""
    for q, col in FEATURE_SNR.items():
        true = truth[f"true_{q}"].to_numpy(dtype=object)
        if q == "bar":
            hidden = np.where(true == "", "", "no")
        elif q == "has-spiral-arms":
            hidden = np.where(arms_asked, "no", "")
        elif q == "merging":
            hidden = np.full(len(true), "none", dtype=object)
        elif q == "smooth-or-featured":
            hidden = np.full(len(true), "smooth", dtype=object)
        else:  # winding and count are asked only about arms that are seen
            hidden = np.full(len(true), "", dtype=object)
        out[f"visible_{q}"] = np.where(seen[col], true, hidden)
    return pd.DataFrame(out, index=truth.index)


def add_visibility(
    truth: pd.DataFrame,
    surveys: Mapping[str, Survey],
    label_survey: str,
    seed: int,
    snr_threshold: float,
    processes: int = 1,
    featured_snr_threshold: float | None = None,
) -> pd.DataFrame:
    """``truth`` (with its ``true_`` answers) plus the S/N columns in ``label_survey`` and the visible answers.

    The stamp field is the largest survey stamp, as in rendering (:func:`galmap.mock.render.render_shard`);
    ``processes``: see :func:`feature_snr`; ``featured_snr_threshold``: see :func:`visible_answers`.
    """
    field = max(s.fov_arcsec for s in surveys.values())
    snr = feature_snr(truth, surveys[label_survey], seed, field, processes)
    truth = pd.concat([truth, snr], axis=1)
    return pd.concat([truth, visible_answers(truth, snr_threshold, featured_snr_threshold)], axis=1)
