"""Noise on larger scales: robust sigma of k x k block means / (native sigma / k) (1 = white) for real coadds,
a legacypipe-style simulated coadd, and sky_noise of off-centre 0.10''/px GZ frames of the DR5 cube."""

import sys

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
import numpy as np
from fitsnoise import cubes, gz, sky_sigma
from sim import legacypipe_coadd


def block(p, k):
    n = p.shape[0] // k * k
    return p[:n, :n].reshape(n // k, k, n // k, k).mean((1, 3))


rng = np.random.default_rng(1)
cubes["sim_legacypipe"] = np.stack([legacypipe_coadd(256, 1.0, rng) for _ in range(3)])
cubes["sim_white"] = rng.normal(0, 1, (3, 256, 256))
for name, c in cubes.items():
    out = []
    for p in c:
        s1 = sky_sigma(p)
        out.append([sky_sigma(block(p, k)) / (s1 / k) for k in (2, 4, 8)])
    print(f"{name:15s} excess (k=2,4,8) per band g,r,z:", np.round(np.array(out), 2).tolist())
a = cubes["dr5_a"]
for y, x in ((0, 0), (0, 339), (339, 0), (339, 339), (170, 170)):
    print("dr5_a sub-frame at", (y, x), "sky_noise 0.10:", round(gz(a[:, y : y + 170, x : x + 170], 0.10), 4))
