"""Real coadds (two DR5 cubes, the DR9-south field with ivar) through the realism stage's own GZ path:
native per-pixel robust sigma per band, sigma*sqrt(ivar) (DR9), and sky_noise of the GZ image at 0.10 and 0.14''/px."""

import numpy as np
from astropy.io import fits

from galmap.core.colour import gz_decals_rgb, to_uint8
from galmap.core.resample import resample_matrix
from galmap.realism.imagestats import measure, robust_std

D = str(__import__("pathlib").Path(__file__).resolve().parents[2] / ".." / "shared" / "data")
NATIVE, SIG_MOCK = 0.262, np.array([0.00411, 0.00765, 0.0185])


def gz(cube, scale):
    n = int(np.ceil(424 * scale / NATIVE)) + 8
    n += (n - 424) % 2
    c = cube.shape[-1] // 2
    h = n // 2
    if n > cube.shape[-1]:
        return np.nan
    sub = cube[:, c - h : c - h + n, c - h : c - h + n]
    m = resample_matrix(n, NATIVE, 424, scale)
    return measure(to_uint8(gz_decals_rgb(np.stack([m @ p @ m.T for p in sub]))))["sky_noise"]


def sky_sigma(p):
    s = robust_std(p.ravel())
    keep = np.abs(p - np.median(p)) < 3 * s
    return robust_std(p[keep])


cubes = {
    "dr5_a": fits.getdata(f"{D}/gz_dr5_fits_with_votes/example_a.fits").astype(float),
    "dr5_b": fits.getdata(f"{D}/gz_dr5_fits_with_votes/example_b.fits").astype(float),
}
h = fits.open(f"{D}/dr9_cutout_with_ivar_psf/cutout_59.1067_-30.4848.fits")
print([(x.header.get("BAND"), x.header.get("IMAGETYP")) for x in h[1:]])
img = np.stack([h[i].data for i in (1, 3, 5)]).astype(float)
iv = np.stack([h[i].data for i in (2, 4, 6)]).astype(float)
cubes["dr9"] = img
for b, (p, w) in enumerate(zip(img, iv, strict=True)):
    s = sky_sigma(p)
    sw = np.median(1 / np.sqrt(w[w > 0]))
    print(
        f"dr9 band {'grz'[b]}: robust sigma {s:.5f}, ivar sigma (median) {sw:.5f}, ratio {s / sw:.3f},"
        f" mock sigma {SIG_MOCK[b]:.5f}, ivar/mock {sw / SIG_MOCK[b]:.3f}"
    )
for k, c in cubes.items():
    sig = [sky_sigma(p) for p in c]
    print(
        k,
        "native robust sigma g,r,z",
        np.round(sig, 5),
        "/ mock",
        np.round(np.array(sig) / SIG_MOCK, 3),
        "sky_noise GZ 0.10:",
        round(gz(c, 0.10), 4),
        "0.14:",
        round(gz(c, 0.14), 4),
        "(mock sigma white: 0.0298, 0.0212)",
    )
