"""SSIM's Gaussian filter: banded matrix products (galmap) vs two 1-D convolutions (the baseline).

The VAE's encode jobs and the super-resolution evaluation compute SSIM on every
galaxy and band in double precision, where ``torch.conv2d`` has no fast CPU path.
Times both filters on the same images in the same run, checks they agree, and
prints the ratio; then the whole :func:`galmap.nn.imagemetrics.ssim` of one
default-sized shard (600 galaxies x 3 bands x 64 x 64 pixels).

Usage::

    python benchmarks/ssim.py [--galaxies 600] [--size 64] [--repeat 5]

The last line is machine-readable: ``RESULT blur_speedup=... ssim_s=...``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from galmap.nn.imagemetrics import SSIM_RADIUS_PX, SSIM_SIGMA_PX, _gaussian_blur, ssim


def conv_blur(img: torch.Tensor, sigma: float, radius: int) -> torch.Tensor:
    """The baseline: separable Gaussian as two 1-D ``conv2d`` calls, 'valid' region."""
    t = torch.arange(-radius, radius + 1, dtype=img.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    return F.conv2d(F.conv2d(img, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--galaxies", type=int, default=600)
    ap.add_argument("--size", type=int, default=64, help="stamp side in pixels")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    shape = (args.galaxies * 3, 1, args.size, args.size)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    ours = _gaussian_blur(x, SSIM_SIGMA_PX, SSIM_RADIUS_PX)
    base = conv_blur(x, SSIM_SIGMA_PX, SSIM_RADIUS_PX)
    diff = float((ours - base).abs().max())
    if diff > 1e-12:
        raise SystemExit(f"the two filters disagree by {diff}")
    t_base = best_of(lambda: conv_blur(x, SSIM_SIGMA_PX, SSIM_RADIUS_PX), args.repeat)
    t_ours = best_of(lambda: _gaussian_blur(x, SSIM_SIGMA_PX, SSIM_RADIUS_PX), args.repeat)
    print(f"{shape[0]} stamps of {args.size}x{args.size} px, one thread, best of {args.repeat}; max diff {diff:.1e}")
    print(f"  conv2d (baseline)      {t_base:7.3f} s   1.00")
    print(f"  banded matmul (galmap) {t_ours:7.3f} s   {t_base / t_ours:.2f}x")
    ref = torch.rand(args.galaxies, 3, args.size, args.size, generator=g)
    img = ref + 0.1 * torch.randn(ref.shape, generator=g)
    valid = torch.rand(ref.shape, generator=g) > 0.05
    t_ssim = statistics.median(best_of(lambda: ssim(ref, img, valid), 1) for _ in range(args.repeat))
    print(f"  whole SSIM of {args.galaxies} galaxies x 3 bands (5 filters + the map): {t_ssim:.3f} s")
    print(f"RESULT blur_speedup={t_base / t_ours:.2f} ssim_s={t_ssim:.3f}")


if __name__ == "__main__":
    main()
