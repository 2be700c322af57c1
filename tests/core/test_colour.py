"""Colour composites: one stretch for all bands, so red stays red and blue stays blue."""

import numpy as np
import pytest

from galmap.core.colour import composite, gz_decals_pixscale, gz_decals_rgb, lupton_rgb, pick_bands


def _gauss(n: int, sigma_px: float) -> np.ndarray:
    y, x = np.mgrid[:n, :n] - (n - 1) / 2
    g = np.exp(-0.5 * (x**2 + y**2) / sigma_px**2)
    return g / g.sum()


def _flux(gr: float, rz: float) -> np.ndarray:
    """g, r, z fluxes (r = 1) of a source with colours g-r and r-z (AB mag)."""
    return np.array([10 ** (-0.4 * gr), 1.0, 10 ** (0.4 * rz)])


def _bulge_disk(n: int = 81, total: float = 50.0) -> np.ndarray:
    """g, r, z (nanomaggies) of a red compact bulge (g-r 0.75, r-z 0.9) in a blue disk (g-r 0.3, r-z 0.3)."""
    bulge = _flux(0.75, 0.9)[:, None, None] * _gauss(n, 2.0) * 0.5 * total
    y, x = np.mgrid[:n, :n] - (n - 1) / 2
    disk_prof = np.exp(-np.hypot(x, y) / 10.0)
    disk = _flux(0.3, 0.3)[:, None, None] * disk_prof / disk_prof.sum() * 0.5 * total
    return bulge + disk


@pytest.mark.parametrize(("recipe", "margin"), [("lupton", 1.15), ("gz_decals", 1.05)])
def test_red_bulge_blue_disk(recipe, margin):
    """Red centre, blue disk (the Galaxy Zoo recipe's per-channel asinh whitens bright cores, hence its margin)."""
    grz = _bulge_disk()
    rgb = composite(grz, ["g", "r", "z"], sigma=[0.003, 0.005, 0.01]) if recipe == "lupton" else gz_decals_rgb(grz)
    c = grz.shape[-1] // 2
    centre = rgb[c - 1 : c + 2, c - 1 : c + 2].reshape(-1, 3).mean(0)
    ring = rgb[c, c + 15 : c + 25].mean(0)  # disk-dominated: 7.5-12.5 bulge sigmas out
    assert centre[0] > margin * centre[2], f"bulge not red: {centre}"
    assert ring[2] > 1.05 * ring[0], f"disk not blue: {ring}"


def test_colour_independent_of_brightness():
    """One stretch for the bands: a red galaxy is red whether faint or bright (a per-band stretch makes it grey)."""
    red = _flux(0.8, 0.9)[:, None, None] * _gauss(41, 3.0)
    for total in (5.0, 500.0):
        rgb = composite(red * total, ["g", "r", "z"], sigma=[0.003, 0.005, 0.01])
        px = rgb[20, 20]
        assert px[0] > 1.3 * px[2]


def test_band_choice_and_grey():
    assert pick_bands(["u", "g", "r", "i", "z"]) == [3, 2, 1]  # i, r, g
    assert pick_bands(["g", "r", "z"]) == [2, 1, 0]
    grey = composite(_gauss(21, 2.0)[None] * 10, ["VIS"], sigma=[0.01])
    assert grey.shape == (21, 21) and 0 <= grey.min() and grey.max() <= 1


def test_lupton_keeps_hue_when_saturated():
    x = np.zeros((3, 5, 5))
    x[:, 2, 2] = [100.0, 50.0, 10.0]
    out = lupton_rgb(x, softening=0.1, maximum=1.0)
    assert out[2, 2, 0] == pytest.approx(1.0)
    assert out[2, 2, 1] / out[2, 2, 0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="3, H, W"):
        lupton_rgb(np.zeros((2, 4, 4)), 1.0)


def test_gz_pixscale_rule():
    assert gz_decals_pixscale(10.0, 30.0) == pytest.approx(0.4)  # 0.04 r50 < 0.02 r90
    assert gz_decals_pixscale(10.0, 15.0) == pytest.approx(0.3)
    assert gz_decals_pixscale(1.0, 2.0) == pytest.approx(0.1)  # the floor
