"""The super-resolution models on a real cutout (superres.apply): reading it and putting it on the surveys' grids."""

from __future__ import annotations

import numpy as np
import pytest

from galmap.core.io import Shard
from galmap.images2images.superres_apply import cutout_shards, read_cutout, to_survey_grid
from tests.conftest import REPO

CUTOUT = REPO.parent / "shared" / "data" / "euclid_q1_cutouts" / "des_vis_102018665.fits"
if not CUTOUT.exists():  # the worktrees sit beside the main checkout: the shared data is one level further up
    CUTOUT = REPO.parents[1] / "shared" / "data" / "euclid_q1_cutouts" / "des_vis_102018665.fits"
pytestmark = pytest.mark.skipif(not CUTOUT.exists(), reason="shared/data/euclid_q1_cutouts is not here")


def _ref(survey, bands, scale, size, sigma):
    attrs = {"bands": list(bands), "pixscale_arcsec": scale, "survey": survey,
             "psf_fwhm_arcsec": [1.3] * len(bands), "norm_softening": [3 * sigma] * len(bands)}  # fmt: skip
    shape = (2, len(bands), size, size)
    return Shard(np.zeros(shape, np.float32), np.full(shape, 1 / sigma**2, np.float32), np.array(["a", "b"], object),
                 attrs, {"psf": np.zeros((len(bands), 51, 51), np.float32)})  # fmt: skip


def test_the_real_cutout_loads_with_its_bands_psfs_and_noise():
    img, ivar, psfs, scale = read_cutout(CUTOUT, ["DES_G", "DES_R", "DES_Z"])
    assert img.shape == (3, 100, 100) and ivar.shape == img.shape and scale == pytest.approx(0.1)
    assert all(p.shape == (49, 49) and p.sum() == pytest.approx(1.0) for p in psfs)
    assert (ivar > 0).mean() > 0.9 and np.isfinite(img).all()
    vis, _, vpsf, _ = read_cutout(CUTOUT, ["VIS"])
    assert vis.shape == (1, 100, 100) and vpsf[0].shape == (21, 21)
    # MAGZERO converts to nanomaggies: the lens galaxy is a 19-22 mag object in VIS
    mag = 22.5 - 2.5 * np.log10(vis[0, 40:60, 40:60].sum())
    assert 17 < mag < 23
    with pytest.raises(ValueError, match="lacks HDU"):
        read_cutout(CUTOUT, ["DES_U"])


def test_the_cutout_lands_on_the_decals_and_euclid_grids():
    sigma = 0.004  # nanomaggies per 0.262" pixel: DECaLS-like sky noise
    src_ref = _ref("decals", "grz", 0.262, 64, sigma)
    tgt_ref = _ref("euclid", ["VIS"], 0.1, 128, 0.01)
    src, tgt = cutout_shards(CUTOUT, ["DES_G", "DES_R", "DES_Z"], ["VIS"], src_ref, tgt_ref, {}, seed=1)
    assert src.images.shape == (1, 3, 64, 64) and tgt.images.shape == (1, 1, 128, 128)
    assert src.extra["psf"].shape == (3, 51, 51) and tgt.extra["psf"].shape == (1, 51, 51)
    assert np.allclose(src.extra["psf"].sum((1, 2)), 1) and np.allclose(tgt.extra["psf"].sum((1, 2)), 1)

    # the DES PSF (~1" FWHM) is wider than VIS's (~0.2") on the same sky: second moments in arcsec^2
    def width(p, scale):
        y, x = (np.mgrid[: p.shape[0], : p.shape[1]] - (p.shape[0] - 1) / 2) * scale
        return float(((x**2 + y**2) * p).sum())

    assert width(src.extra["psf"][1], 0.262) > 4 * width(tgt.extra["psf"][0], 0.1)
    # the 10" cutout covers the stamps' centres only: no data beyond it
    assert src.ivar[0, :, 32, 32].all() and not src.ivar[0, :, 0, 0].any() and not tgt.ivar[0, 0, 0, 0]
    # flux per pixel conserved by the resampling (before the preprocessing's own background): the r-band flux
    # within 2" of the centre, DES grid vs DECaLS grid
    img, iv, psf, scale = read_cutout(CUTOUT, ["DES_R"])
    out, _, _ = to_survey_grid(img, iv, psf, scale, 0.262, 64, 51, None, np.random.default_rng(0))
    y, x = np.mgrid[:100, :100] - 49.5
    y2, x2 = np.mgrid[:64, :64] - 31.5
    assert out[0][np.hypot(x2, y2) * 0.262 < 2].sum() == pytest.approx(img[0][np.hypot(x, y) * 0.1 < 2].sum(), rel=0.03)
    # the noise now is DECaLS's, and the networks get the training shards' softening
    sky = src.images[0, 1][(np.hypot(x2, y2) * 0.262 > 3.5) & (src.ivar[0, 1] > 0)]
    assert np.std(sky) == pytest.approx(sigma, rel=0.35)
    assert src.attrs["norm_softening"] == pytest.approx([3 * sigma] * 3)
    assert src.extra["segmap"][0, 32, 32] == 1 and tgt.extra["segmap"][0, 64, 64] == 1
