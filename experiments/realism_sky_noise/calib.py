"""ratio (4x4-binned / unbinned luminance noise) and sky_noise of pure-sky images vs GZ pixel scale."""

import sys

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
import numpy as np
from real import ratio
from sim import NATIVE, SIG_MOCK, legacypipe_coadd

from galmap.core.colour import gz_decals_rgb, to_uint8
from galmap.core.resample import resample_matrix
from galmap.realism.imagestats import measure

rng = np.random.default_rng(7)
for mode in ("white", "legacypipe"):
    for scale in (0.1, 0.12, 0.14, 0.16, 0.18, 0.2, 0.25):
        n = int(np.ceil(424 * scale / NATIVE)) + 8
        n += (n - 424) % 2
        m = resample_matrix(n, NATIVE, 424, scale)
        pl = [
            m @ (rng.normal(0, s, (n, n)) if mode == "white" else legacypipe_coadd(n, s, rng)) @ m.T for s in SIG_MOCK
        ]
        img = to_uint8(gz_decals_rgb(np.stack(pl)))
        print(
            f"{mode:10s} scale {scale:.2f} ratio {ratio(img):.3f} sky_noise {measure(img)['sky_noise']:.4f}", flush=True
        )
