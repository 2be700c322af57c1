"""The batched morphometry (galmap.structure.morphometry) against statmorph on GalSim galaxies."""

from __future__ import annotations

import warnings

import galsim
import numpy as np
import pytest
import torch
from scipy import ndimage

from galmap.structure.measure import _statmorph_class
from galmap.structure.morphometry import circle_pixel_overlap, gini_coefficient, measure_batched
from galmap.structure.parameters import MORPH_PARAMETERS

SIZE = 56
SCALE = 0.262
SIGMA = 0.02  # noise per pixel


def _psf():
    return galsim.Moffat(beta=3.5, fwhm=1.3)


def _draw(obj) -> np.ndarray:
    return galsim.Convolve(obj, _psf()).drawImage(nx=SIZE, ny=SIZE, scale=SCALE).array.astype(np.float64)


def _spiral() -> np.ndarray:
    """A Sérsic disc with a two-armed logarithmic-spiral modulation (m = 2), PSF-convolved."""
    y, x = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2.0
    r = np.hypot(x, y) + 1e-3
    phi = np.arctan2(y, x)
    disc = np.exp(-r / 5.0)
    arms = 1 + 0.8 * np.cos(2 * (phi - np.log(r) / np.tan(np.radians(20))))
    img = galsim.ImageD(disc * arms, scale=SCALE)
    gal = galsim.InterpolatedImage(img, flux=60.0) + galsim.Sersic(n=3, half_light_radius=0.5, flux=15.0)
    return _draw(gal)


def _sample(kind: str, seed: int = 3):
    if kind == "sersic":
        img = _draw(galsim.Sersic(n=2.5, half_light_radius=1.6, flux=80.0).shear(q=0.6, beta=30 * galsim.degrees))
    elif kind == "spiral":
        img = _spiral()
    elif kind == "merger":
        a = galsim.Sersic(n=1.5, half_light_radius=1.4, flux=60.0)
        b = galsim.Sersic(n=3.0, half_light_radius=0.8, flux=35.0).shift(1.6, 0.9)
        img = _draw(a + b)
    else:
        raise ValueError(kind)
    rng = np.random.default_rng(seed)
    img = img + rng.normal(0, SIGMA, img.shape)
    ivar = np.full(img.shape, 1 / SIGMA**2)
    # the segment: the central connected part of the smoothed image above 1.5 sigma
    smooth = ndimage.gaussian_filter(img, 1.0)
    lab, _ = ndimage.label(smooth > 3 * SIGMA / 2)
    seg = lab == lab[SIZE // 2, SIZE // 2]
    mask = np.zeros(img.shape, bool)
    return img, ivar, seg, mask


def _statmorph(img, ivar, seg, mask):
    weight = np.where(ivar > 0, 1 / np.sqrt(np.maximum(ivar, 1e-30)), 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = _statmorph_class()(img, seg.astype(np.int32), 1, mask=mask | (ivar <= 0), weightmap=weight)
    return {k: float(m[k]) for k in MORPH_PARAMETERS} | {"flag": int(m.flag)}


def _batched(samples, **kw):
    stack = [np.stack(a) for a in zip(*samples, strict=True)]
    return measure_batched(*stack, device="cpu", **kw)


# population spreads (1.4826 x MAD) of statmorph's values on the default mock's DECaLS r band
SPREAD = {
    "concentration": 0.2, "asymmetry": 0.02, "smoothness": 0.045, "gini": 0.03, "m20": 0.09, "gini_m20_bulge": 0.2,
    "gini_m20_merger": 0.023, "rpetro_circ": 3.3, "rhalf_circ": 1.35, "sn_per_pixel": 13.0,
}  # fmt: skip
# quantities on the Gini segmap, whose threshold uses approximated elliptical apertures: one pixel
# more or less in a small segmap moves them by a few % of the spread (median over the mock: 0)
SEGMAP_QUANTITIES = {"gini", "m20", "gini_m20_bulge", "gini_m20_merger", "sn_per_pixel"}


def _tol(k: str) -> float:
    return (0.05 if k in SEGMAP_QUANTITIES else 0.02) * SPREAD[k]


@pytest.fixture(scope="module")
def galaxies():
    kinds = ["sersic", "spiral", "merger"]
    samples = [_sample(k) for k in kinds]
    exact = _batched(samples, xtol=1e-6, exact_search=True)  # statmorph's centre search
    fast = _batched(samples)  # the defaults
    refs = [_statmorph(*s) for s in samples]
    return kinds, samples, refs, exact, fast


@pytest.mark.parametrize("i", [0, 1, 2], ids=["sersic", "spiral", "merger"])
def test_agrees_with_statmorph(galaxies, i):
    """With statmorph's centre search: equal up to the elliptical apertures' approximation."""
    _, _, refs, (table, errors), _ = galaxies
    ref, row = refs[i], table.iloc[i]
    assert errors[i] is None
    assert int(row["flag"]) == ref["flag"]
    for k in MORPH_PARAMETERS:
        assert row[k] == pytest.approx(ref[k], abs=_tol(k)), k


@pytest.mark.parametrize("i", [0, 1, 2], ids=["sersic", "spiral", "merger"])
def test_defaults_agree_with_statmorph(galaxies, i):
    """The faster defaults (approximate search, xtol 1e-2 px): within 2 % (5 %) of the population spread."""
    _, _, refs, _, (table, errors) = galaxies
    ref, row = refs[i], table.iloc[i]
    assert errors[i] is None and int(row["flag"]) == ref["flag"]
    for k in MORPH_PARAMETERS:
        assert row[k] == pytest.approx(ref[k], abs=_tol(k)), k


def test_structure_is_ordered(galaxies):
    kinds, _, _, _, (table, _) = galaxies
    t = table.set_index(np.array(kinds))
    assert t.loc["merger", "asymmetry"] > t.loc["sersic", "asymmetry"]
    assert t.loc["sersic", "concentration"] > 2.0


def test_point_symmetric_asymmetry_is_zero():
    img = _draw(galsim.Gaussian(sigma=1.0, flux=50.0))  # centred on the stamp: point symmetric, no noise
    ivar = np.full(img.shape, 1e4)
    seg = img > img.max() * 1e-3
    table, _ = measure_batched(img[None], ivar[None], seg[None], None, device="cpu")
    assert abs(table["asymmetry"].iloc[0]) < 1e-4


def test_gini_limits():
    v = torch.ones(1, 100, dtype=torch.float64)
    sel = torch.ones(1, 100, dtype=torch.bool)
    g, ok = gini_coefficient(v, sel)
    assert ok.all() and float(g[0]) == pytest.approx(0.0, abs=1e-12)
    v = torch.zeros(1, 100, dtype=torch.float64)
    v[0, 37] = 5.0
    g, ok = gini_coefficient(v, sel)
    assert float(g[0]) == pytest.approx(1.0, abs=1e-12)
    g, ok = gini_coefficient(v, torch.zeros_like(sel))
    assert not ok.any()


def test_m20_concentrated_vs_clumpy():
    conc = _draw(galsim.Sersic(n=4, half_light_radius=1.2, flux=80.0))
    clumps = galsim.Add(
        [
            galsim.Gaussian(sigma=0.35, flux=15.0).shift(dx, dy)
            for dx, dy in ((-1.6, 0), (1.6, 0.3), (0, 1.7), (0.2, -1.5))
        ]
    )
    clumpy = _draw(clumps + galsim.Exponential(half_light_radius=2.0, flux=20.0))
    rng = np.random.default_rng(0)
    imgs = np.stack([conc, clumpy]) + rng.normal(0, SIGMA, (2, SIZE, SIZE))
    ivar = np.full(imgs.shape, 1 / SIGMA**2)
    seg = np.stack([im > 4 * SIGMA for im in imgs])
    table, _ = measure_batched(imgs, ivar, seg, None, device="cpu")
    assert table["m20"].iloc[0] < table["m20"].iloc[1] - 0.3
    assert table["gini"].iloc[0] > table["gini"].iloc[1]


def test_masks_and_nan_as_statmorph():
    img, ivar, seg, mask = _sample("sersic", seed=5)
    img = img.copy()
    img[20, 31] = np.nan  # a NaN pixel inside the galaxy
    ivar = ivar.copy()
    ivar[40:44, 10:20] = 0  # pixels without data
    mask = mask.copy()
    mask[12:18, 36:44] = True  # a masked neighbour
    img[12:18, 36:44] += 3.0
    img[30, 22] += 50.0  # an outlier (statmorph's 10-sigma bad pixel)
    ref = _statmorph(img, ivar, seg, mask)
    table, errors = measure_batched(img[None], ivar[None], seg[None], mask[None], device="cpu")
    row = table.iloc[0]
    assert errors[0] is None and int(row["flag"]) == ref["flag"]
    for k in MORPH_PARAMETERS:
        assert row[k] == pytest.approx(ref[k], abs=_tol(k)), k


def test_empty_segment_and_no_data():
    img, ivar, seg, mask = _sample("sersic")
    imgs = np.stack([img, img, img])
    ivars = np.stack([ivar, ivar, np.zeros_like(ivar)])
    segs = np.stack([seg, np.zeros_like(seg), seg])
    table, errors = measure_batched(imgs, ivars, segs, None, device="cpu")
    assert list(table["flag"]) == [0, 4, 4]
    assert errors == [None, "no source in the segmentation", "no valid pixel"]
    assert table.iloc[1:][MORPH_PARAMETERS].isna().all().all()
    assert table.iloc[0][MORPH_PARAMETERS].notna().all()


def test_circle_overlap_is_exact():
    from photutils.aperture import CircularAperture

    yy, xx = np.mgrid[:32, :32].astype(np.float64)
    for cx, cy, r in ((15.3, 16.7, 0.7), (14.0, 15.5, 6.25), (16.2, 15.9, 11.3)):
        ref = CircularAperture((cx, cy), r).to_mask(method="exact").to_image((32, 32))
        ours = circle_pixel_overlap(
            torch.from_numpy(xx - cx), torch.from_numpy(yy - cy), torch.tensor(r, dtype=torch.float64)
        )
        np.testing.assert_allclose(ours.numpy(), ref, atol=1e-9)


def test_an_empty_stack_gives_an_empty_table():
    """A shard with no galaxy (the last shard of a catalog can be short): typed columns, no row, no error."""
    table, errors = measure_batched(np.zeros((0, 48, 48)), np.zeros((0, 48, 48)), np.zeros((0, 48, 48), bool))
    assert len(table) == 0 and errors == [] and list(table.columns) == [*MORPH_PARAMETERS, "flag"]
