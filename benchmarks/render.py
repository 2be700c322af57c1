"""Benchmark: mock-survey rendering and preprocessing speed, per survey.

Run: ``.venv/bin/python benchmarks/render.py [--n 200] [--config config/config.yaml]``

Prints, for every survey of the config, galaxies rendered per second and the ratio
of our full galaxy model's cost to a baseline measured in the same run: the same
number of plain single-Sérsic GalSim galaxies drawn on the same grid with the same
PSF (these machines are noisy; only ratios measured together are comparable).
Also prints preprocessing galaxies per second and the speed-up of rendering two
shards in two processes versus one after the other (what Snakemake's
``--cores 2`` gives). The last line is machine-readable.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import galsim

from galmap.core.config import load_config
from galmap.core.surveys import GSPARAMS, surveys_from_config
from galmap.mock.population import draw_population
from galmap.mock.render import render_shard
from galmap.preprocess.stamps import preprocess_shard

REPO = Path(__file__).resolve().parents[1]


def baseline(truth, survey) -> float:
    """Seconds to draw a plain PSF-convolved Sérsic (n=2) per galaxy and band on the survey grid."""
    psfs = [survey.psf(b) for b in survey.bands]
    t0 = time.perf_counter()
    for row in truth.to_dict("records"):
        gal = galsim.Sersic(n=2.0, half_light_radius=1.0 + 0.5 * (row["index"] % 3), gsparams=GSPARAMS)
        for psf in psfs:
            galsim.Convolve(gal, psf).drawImage(nx=survey.stamp_px, ny=survey.stamp_px, scale=survey.pixscale_arcsec)
    return time.perf_counter() - t0


def _render(args):
    truth, surveys, seed = args
    return render_shard(truth, surveys, seed, progress=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="galaxies per measurement")
    ap.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    args = ap.parse_args()
    cfg = load_config(args.config, REPO / "workflow" / "schemas" / "config.schema.yaml")
    cfg["mock"]["n_galaxies"] = 2 * args.n
    truth = draw_population(cfg)
    surveys = surveys_from_config(cfg)
    first = truth.iloc[: args.n]
    # warm GalSim's caches (Sérsic tables per n) so both sides are measured warm
    render_shard(first.iloc[:40], list(surveys.values()), cfg["seed"], progress=False)

    print(f"# {args.n} galaxies per measurement, config {args.config}")
    print(f"{'survey':8s} {'bands':>5s} {'stamp':>6s} {'gal/s':>8s} {'baseline gal/s':>15s} {'cost ratio':>10s}")
    rates = {}
    shards = {}
    for name, s in surveys.items():
        t0 = time.perf_counter()
        shards[name] = render_shard(first, [s], cfg["seed"], progress=False)[name]
        ours = time.perf_counter() - t0
        base = baseline(first, s)
        rates[name] = args.n / ours
        row = f"{name:8s} {len(s.bands):5d} {s.stamp_px:6d} {args.n / ours:8.1f}"
        print(f"{row} {args.n / base:15.1f} {ours / base:10.2f}")
    t0 = time.perf_counter()
    _render((first, list(surveys.values()), cfg["seed"]))
    all_serial = time.perf_counter() - t0
    print(f"all surveys at once: {args.n / all_serial:.1f} galaxies/s (every survey of every galaxy)")

    t0 = time.perf_counter()
    for shard in shards.values():
        preprocess_shard(shard, cfg["preprocess"])
    pre = time.perf_counter() - t0
    print(f"preprocessing, all surveys: {args.n / pre:.1f} galaxies/s")

    halves = [truth.iloc[: args.n], truth.iloc[args.n :]]
    work = [(h, list(surveys.values()), cfg["seed"]) for h in halves]
    t0 = time.perf_counter()
    for w in work:
        _render(w)
    serial = time.perf_counter() - t0
    with ProcessPoolExecutor(2) as pool:
        t0 = time.perf_counter()
        list(pool.map(_render, work))
        parallel = time.perf_counter() - t0
    speedup = serial / parallel
    print(f"two shards: serial {serial:.1f} s, two processes {parallel:.1f} s, speed-up {speedup:.2f}x")
    per = " ".join(f"{k}_gal_per_s={v:.1f}" for k, v in rates.items())
    print(
        f"render all_surveys_gal_per_s={args.n / all_serial:.2f} {per} "
        f"preprocess_gal_per_s={args.n / pre:.1f} shard_parallel_speedup={serial / parallel:.2f}"
    )


if __name__ == "__main__":
    main()
