"""sky_noise of pure-sky GZ DECaLS images: white vs legacypipe-resampled noise, vs GZ pixel scale.
Uses galmap's own resample_matrix, gz_decals_rgb, to_uint8, imagestats.measure (as the realism stage)."""

import numpy as np

from galmap.core.colour import gz_decals_rgb, to_uint8
from galmap.core.config import load_config  # noqa
from galmap.core.resample import lanczos, resample_matrix
from galmap.realism.imagestats import measure

NATIVE = 0.262
SIG_MOCK = np.array([0.00411, 0.00765, 0.0185])  # docs/mock.md per-pixel sigma g,r,z (nmgy)


def legacypipe_coadd(n, sig, rng, nexp=3):
    """coadd of nexp exposures, each white noise (per-exposure sigma = sig*sqrt(nexp)) Lanczos-3
    shifted by a random sub-pixel offset onto the brick grid (the coadd ivar stays the nominal 1/sig^2)."""
    acc = np.zeros((n, n))
    for _ in range(nexp):
        e = rng.normal(0, sig * np.sqrt(nexp), (n + 12, n + 12))
        dx, dy = rng.uniform(0, 1, 2)

        def m1(d):
            k = np.arange(n + 12)[None, :] - (np.arange(n)[:, None] + 6 + d)
            return lanczos(k)

        mx, my = m1(dx), m1(dy)
        mx /= mx.sum(1, keepdims=True)
        my /= my.sum(1, keepdims=True)
        acc += my @ e @ mx.T
    return acc / nexp


def sky_noise(scale, sig, rng, mode, size=424):
    n = int(np.ceil(size * scale / NATIVE)) + 8
    n += (n - size) % 2
    m = resample_matrix(n, NATIVE, size, scale)
    planes, native_sd = [], []
    for s in sig:
        img = rng.normal(0, s, (n, n)) if mode == "white" else legacypipe_coadd(n, s, rng)
        native_sd.append(img.std() / s)
        planes.append(m @ img @ m.T)
    st = measure(to_uint8(gz_decals_rgb(np.stack(planes))))
    return st["sky_noise"], np.mean(native_sd)


if __name__ == "__main__":
    rng = np.random.default_rng(27)
    for mode in ("white", "legacypipe"):
        for f in (1.0, 0.7, 0.6):
            for scale in (0.1, 0.13, 0.16, 0.2, 0.25, 0.3):
                sn, nsd = sky_noise(scale, SIG_MOCK * f, rng, mode)
                print(
                    f"{mode:10s} sigma x{f:.2f} scale {scale:.2f}  native sd/sigma {nsd:.3f}  sky_noise {sn:.4f}",
                    flush=True,
                )
