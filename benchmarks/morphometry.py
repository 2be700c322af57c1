"""Benchmark: batched PyTorch morphometry (galmap.structure.morphometry) against statmorph.

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/morphometry.py [SHARD.h5 ...] [--n 200] [--fits DIR]``

Measures the same galaxies with statmorph as the pipeline runs it
(:func:`galmap.structure.measure.morphometry_shard`, 2 processes) and with
:func:`galmap.structure.morphometry.measure_batched` (``torch.set_num_threads(2)``), both
timed in this run, on

(a) preprocessed mock DECaLS shards (r band): the given shard files, by default the
    default pipeline run's ``results/images/decals/shard-0000.h5`` in this checkout when it
    exists, else a mock shard made here with the project's renderer and preprocessing
    (default config, DECaLS only);
(b) the real DECaLS cube FITS in ``--fits`` (g, r, z; some resampled, one truncated,
    one with bad pixels), read with the project's ingestion (``galmap.data.ingest``) onto
    the default config's DECaLS grid and preprocessed with ``galmap.preprocess.stamps`` (the
    pipeline's own segmentation, neighbour mask and ivar), measured in r.

The batched code is timed twice on the same 2 cores: one process with
``torch.set_num_threads(2)`` and ``measure_batched(..., processes=2)`` (two worker
processes with one thread each, as statmorph's two processes); the summary line uses
the faster of the two (both are printed).

Agreement is reported on the galaxies statmorph flags good (``flag == 0``): per
quantity the median and 95th percentile of |batched - statmorph| / scale, where scale
is 1.4826 x the MAD of statmorph's values over those galaxies; flag agreement is over
all galaxies. The last line is machine-readable.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from galmap.core.io import Shard, read_shard
from galmap.structure.measure import morphometry_shard
from galmap.structure.morphometry import measure_batched
from galmap.structure.parameters import MORPH_PARAMETERS

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SHARD = REPO / "results" / "images" / "decals" / "shard-0000.h5"  # the default run's first shard
DEFAULT_FITS = REPO.parent / "shared" / "data" / "decals_fits"
BAND = "r"


def _config():
    from galmap.core.config import load_config

    return load_config(REPO / "config" / "config.yaml", REPO / "workflow" / "schemas" / "config.schema.yaml")


def mock_shard(n: int, seed: int = 11) -> Shard:
    """A preprocessed DECaLS shard of ``n`` mock galaxies (default config otherwise)."""
    from galmap.core.surveys import surveys_from_config
    from galmap.mock.population import draw_population
    from galmap.mock.render import render_shard
    from galmap.preprocess.stamps import preprocess_shard

    cfg = _config()
    cfg["mock"]["n_galaxies"] = n
    cfg["seed"] = seed
    truth = draw_population(cfg)
    survey = surveys_from_config(cfg)["decals"]
    raw = render_shard(truth, [survey], cfg["seed"], progress=False)["decals"]
    return preprocess_shard(raw, cfg["preprocess"])


def fits_shard(folder: Path) -> Shard:
    """The FITS cutouts of ``folder`` ingested on the DECaLS grid and preprocessed as the pipeline does."""
    from galmap.core.failures import FailureLog
    from galmap.data.ingest import ingest_cutouts
    from galmap.preprocess.stamps import preprocess_shard

    cfg = _config()
    sv = cfg["surveys"]["decals"]
    bands = list(sv["bands"])
    files = sorted(folder.glob("*.fits"))
    rows = pd.DataFrame({"id": [f.stem for f in files], "file": [str(f) for f in files]})
    failures = FailureLog("data")
    raw = ingest_cutouts(
        rows, "decals", bands, int(sv["stamp_px"]), float(sv["pixscale_arcsec"]),
        [float(sv["psf_fwhm_arcsec"][b]) for b in bands], failures,
    )  # fmt: skip
    pre = preprocess_shard(raw, cfg["preprocess"], failures)
    for row in failures.frame().itertuples(index=False):
        print(f"#   {' '.join(str(v) for v in row)}")
    return pre


def subset(shard: Shard, n: int | None) -> Shard:
    if n is None or n >= len(shard.ids):
        return shard
    extra = {k: v[:n] for k, v in shard.extra.items() if k != "psf"}
    extra["psf"] = shard.extra["psf"]
    return Shard(shard.images[:n], shard.ivar[:n], np.asarray(shard.ids[:n]), dict(shard.attrs), extra)


def run(shard: Shard, label: str) -> dict:
    """Both measurements of ``shard`` in r; prints the agreement, returns timings and diffs."""
    n = len(shard.ids)
    j = shard.bands.index(BAND)
    t0 = time.perf_counter()
    ref = morphometry_shard(shard, BAND, processes=2, method="statmorph")
    t_sm = time.perf_counter() - t0
    args = (shard.images[:, j], shard.ivar[:, j], shard.extra["segmap"], shard.extra["mask"])
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    ours, _errors = measure_batched(*args)
    t_threads = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours2, _ = measure_batched(*args, processes=2)
    t_procs = time.perf_counter() - t0
    same = float(np.nanmax(np.abs(ours[MORPH_PARAMETERS].to_numpy() - ours2[MORPH_PARAMETERS].to_numpy()), initial=0.0))
    t_b = min(t_threads, t_procs)
    good = ref["flag"].to_numpy() == 0
    flag_agree = float(np.mean(ref["flag"].to_numpy() == ours["flag"].to_numpy()))
    print(f"## {label}: {n} galaxies, {int(good.sum())} with statmorph flag 0 (good)")
    print(f"statmorph (2 processes): {t_sm:.1f} s = {n / t_sm:.2f} galaxies/s")
    print(
        f"batched, 1 process x 2 torch threads: {t_threads:.1f} s = {n / t_threads:.2f} galaxies/s; "
        f"speed-up {t_sm / t_threads:.2f}x"
    )
    print(
        f"batched, 2 processes x 1 torch thread: {t_procs:.1f} s = {n / t_procs:.2f} galaxies/s; "
        f"speed-up {t_sm / t_procs:.2f}x (identical results: {same})"
    )
    print(f"flag agreement (all galaxies): {flag_agree:.3f}")
    print(pd.crosstab(ref["flag"].rename("statmorph"), ours["flag"].rename("batched")).to_string())
    print(f"{'quantity':16s} {'scale':>10s} {'median|d|/s':>12s} {'p95|d|/s':>10s} {'max|d|/s':>10s}")
    med, p95 = {}, {}
    for k in MORPH_PARAMETERS:
        a, b = ref[k].to_numpy()[good], ours[k].to_numpy()[good]
        scale = 1.4826 * np.median(np.abs(a - np.median(a))) if good.any() else np.nan
        d = np.abs(a - b) / scale if scale > 0 else np.abs(a - b)
        med[k] = float(np.nanmedian(d)) if d.size else np.nan
        p95[k] = float(np.nanpercentile(d, 95)) if d.size else np.nan
        mx = float(np.nanmax(d)) if d.size else np.nan
        print(f"{k:16s} {scale:10.4g} {med[k]:12.5f} {p95[k]:10.5f} {mx:10.4f}")
    return {"n": n, "t_sm": t_sm, "t_b": t_b, "med": med, "p95": p95, "flag": flag_agree}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shards", nargs="*", help=f"preprocessed DECaLS shards (default {DEFAULT_SHARD} if present)")
    ap.add_argument("--n", type=int, default=200, help="galaxies per shard measured (default 200; 0: all)")
    ap.add_argument("--fits", default=str(DEFAULT_FITS), help="folder of real DECaLS FITS cutouts ('' to skip)")
    args = ap.parse_args()
    n = None if args.n <= 0 else args.n
    paths = [Path(p) for p in args.shards] or ([DEFAULT_SHARD] if DEFAULT_SHARD.exists() else [])
    if paths:
        shards = [subset(read_shard(p), n) for p in paths]
        label = "mock DECaLS r: " + ", ".join(str(p) for p in paths)
    else:
        shards = [mock_shard(n or 200)]
        label = "mock DECaLS r (made here, default config)"
    mock = shards[0]
    for extra in shards[1:]:
        mock = Shard(
            np.concatenate([mock.images, extra.images]), np.concatenate([mock.ivar, extra.ivar]),
            np.concatenate([mock.ids, extra.ids]), mock.attrs,
            {k: (np.concatenate([mock.extra[k], extra.extra[k]]) if k != "psf" else mock.extra[k]) for k in mock.extra},
        )  # fmt: skip
    results = [run(mock, label)]
    if args.fits and Path(args.fits).is_dir():
        results.append(run(fits_shard(Path(args.fits)), f"real DECaLS FITS r: {args.fits}"))
    n_all = sum(r["n"] for r in results)
    t_sm = sum(r["t_sm"] for r in results)
    t_b = sum(r["t_b"] for r in results)
    worst_med = max(v for r in results for v in r["med"].values() if np.isfinite(v))
    worst_p95 = max(v for r in results for v in r["p95"].values() if np.isfinite(v))
    print(f"max 95th-percentile |d|/scale over quantities and samples: {worst_p95:.4f}")
    print(
        f"morphometry galaxies_per_s={n_all / t_b:.2f} speedup_vs_statmorph={t_sm / t_b:.2f} "
        f"max_median_rel_diff={worst_med:.5f} n={n_all}"
    )


if __name__ == "__main__":
    main()
