"""Benchmark: batched PyTorch Sérsic fitting vs per-galaxy scipy least_squares, and statmorph.

Run: ``.venv/bin/python benchmarks/sersic.py [--n 200] [--n-scipy 50]``

Renders ``--n`` single-Sérsic mock galaxies (DECaLS g, r, z, 64 x 64, with PSF, noise,
neighbours), preprocesses them, and fits them with the batched Levenberg–Marquardt
fitter; the first ``--n-scipy`` are also fitted one at a time with
``scipy.optimize.least_squares`` on the same model, the same starting point and the same
analytic Jacobian (so the ratio measures batching and the solver, not derivatives).
The per-galaxy fits evaluate the model in float64 (2-point finite differences are
noise in float32). Prints galaxies per second for both, the speed-up, and the accuracy of both against the
truth; then statmorph's seconds per galaxy and the speed-up of two processes over one.
The last line is machine-readable.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import least_squares

from galmap.core.config import load_config
from galmap.core.surveys import surveys_from_config
from galmap.mock.population import draw_population
from galmap.mock.render import render_shard
from galmap.preprocess.stamps import preprocess_shard
from galmap.structure.measure import fit_sersic_shard, morphometry_shard
from galmap.structure.sersic import SersicFitter, initial_guess

REPO = Path(__file__).resolve().parents[1]


def scipy_fit(fitter: SersicFitter, image: np.ndarray, ivar: np.ndarray, seg: np.ndarray, analytic: bool) -> np.ndarray:
    """One galaxy with scipy least_squares (trust-region reflective) on the fitter's model.

    ``analytic``: give scipy the fitter's exact Jacobian; otherwise scipy's default
    2-point finite differences.
    """
    kw = {"dtype": torch.float64}
    data = torch.as_tensor(image[None], **kw)
    sqrt_w = torch.sqrt(torch.as_tensor(ivar[None], **kw))
    g = initial_guess(image[None], ivar[None], seg[None])
    from galmap.structure.sersic import N_RANGE, Q_RANGE, _logit

    x0 = np.concatenate(
        [
            [g["x0"][0], g["y0"][0], _logit(g["n"], *N_RANGE)[0], np.log(g["re"][0])],
            [_logit(g["q"], *Q_RANGE)[0], g["pa"][0]],
            np.log(g["flux"][0]),
            np.zeros(fitter.nb) if fitter.fit_sky else [],
        ]
    )

    def fun(x):
        with torch.no_grad():
            return fitter._residuals(torch.as_tensor(x[None], **kw), data, sqrt_w)[0].numpy()

    def jac(x):
        return fitter._jacobian(torch.as_tensor(x[None], **kw), data, sqrt_w)[1][0].numpy()

    sol = least_squares(fun, x0, jac=jac if analytic else "2-point", method="trf", x_scale="jac", max_nfev=200)
    t = torch.as_tensor(sol.x[None], **kw)
    _, _, n, re, q, _, _, _ = fitter._physical(t)
    return np.array([float(n[0]), float(re[0]), float(q[0])])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--n-scipy", type=int, default=50)
    ap.add_argument("--n-statmorph", type=int, default=60)
    args = ap.parse_args()
    torch.set_num_threads(2)
    cfg = load_config(REPO / "config" / "config.yaml", REPO / "workflow" / "schemas" / "config.schema.yaml")
    cfg["mock"] |= {
        "n_galaxies": args.n,
        "type_fractions": {"elliptical": 1.0, "lenticular": 0.0, "spiral": 0.0, "irregular": 0.0},
        "merger_fraction": 0.0,
    }
    truth = draw_population(cfg)
    decals = surveys_from_config(cfg)["decals"]
    raw = render_shard(truth, [decals], cfg["seed"], progress=False)["decals"]
    shard = preprocess_shard(raw, cfg["preprocess"])
    n_true, re_true, q_true = (
        truth["bulge_n"].to_numpy(),
        truth["bulge_re_arcsec"].to_numpy(),
        truth["bulge_q"].to_numpy(),
    )
    scale = decals.pixscale_arcsec

    t0 = time.perf_counter()
    rows = fit_sersic_shard(shard, cfg["structure"])
    batched_s = time.perf_counter() - t0
    r = rows[rows["band"] == "r"].reset_index(drop=True)
    ours = np.column_stack([r["n"], r["re_arcsec"], r["q"]])

    # the per-galaxy baseline evaluates the same model in double precision (finite
    # differences need it); our batched fitter runs its float32 default
    fitter = SersicFitter(
        shard.extra["psf_profile"], shard.images.shape[2:], fit_sky=cfg["structure"]["fit_sky"], dtype=torch.float64
    )
    k = min(args.n_scipy, args.n)
    timings, fits = {}, {}
    for analytic in (False, True):
        t0 = time.perf_counter()
        fits[analytic] = np.array(
            [scipy_fit(fitter, shard.images[i], shard.ivar[i], shard.extra["segmap"][i], analytic) for i in range(k)]
        )
        timings[analytic] = time.perf_counter() - t0
        fits[analytic][:, 1] *= scale

    def acc(est, sel):
        dn = np.nanmedian(np.abs(est[:, 0] - n_true[sel]) / n_true[sel])
        dre = np.nanmedian(np.abs(est[:, 1] - re_true[sel]) / re_true[sel])
        dq = np.nanmedian(np.abs(est[:, 2] - q_true[sel]))
        return dn, dre, dq

    rate = args.n / batched_s
    rate_fd, rate_an = k / timings[False], k / timings[True]
    a_all, a_ours = acc(ours, slice(None)), acc(ours[:k], slice(0, k))
    a_fd, a_an = acc(fits[False], slice(0, k)), acc(fits[True], slice(0, k))
    print(f"# {args.n} single-Sérsic mock DECaLS stamps 64x64x3 with PSF; device {fitter.device}, 2 threads")
    print(f"batched LM (ours)                : {rate:8.1f} galaxies/s  median iterations {np.median(r['n_iter']):.0f}")
    print(f"scipy per galaxy, 2-point Jacobian: {rate_fd:8.1f} galaxies/s  (first {k}; speed-up {rate / rate_fd:.1f}x)")
    print(f"scipy per galaxy, exact Jacobian  : {rate_an:8.1f} galaxies/s  (first {k}; speed-up {rate / rate_an:.1f}x)")
    print(f"accuracy on all {args.n} (ours): median |dn|/n={a_all[0]:.4f} |dRe|/Re={a_all[1]:.4f} |dq|={a_all[2]:.4f}")
    for name, a in (("ours", a_ours), ("scipy 2-point", a_fd), ("scipy exact", a_an)):
        print(f"  first {k}, {name:14s}: median |dn|/n={a[0]:.4f} |dRe|/Re={a[1]:.4f} |dq|={a[2]:.4f}")
    rate_sp = rate_fd

    m = min(args.n_statmorph, args.n)
    sub = type(shard)(shard.images[:m], shard.ivar[:m], shard.ids[:m], shard.attrs, {
        key: (v[:m] if key in ("segmap", "mask", "flags", "background") else v) for key, v in shard.extra.items()
    })  # fmt: skip
    t0 = time.perf_counter()
    morphometry_shard(sub, "r", processes=1)
    one = time.perf_counter() - t0
    t0 = time.perf_counter()
    morphometry_shard(sub, "r", processes=2)
    two = time.perf_counter() - t0
    print(f"statmorph: {one / m:.3f} s/galaxy in one process; two processes {one / two:.2f}x faster")
    print(
        f"sersic_fit galaxies_per_s={rate:.2f} speedup_vs_scipy={rate / rate_sp:.1f} "
        f"median_abs_dn_over_n={a_all[0]:.4f} median_abs_dre_over_re={a_all[1]:.4f}"
    )


if __name__ == "__main__":
    main()
