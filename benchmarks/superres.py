"""What does a diffusion draw cost? Training and sampling throughput of the super-resolution U-Nets, timed in one run.

Times, with the U-Net of the default ``superres`` config (``superres.channels``) on
``--size``-pixel target stamps conditioned on three source bands:

* ``regression_train``: training steps of the regression U-Net (images/s; the baseline);
* ``diffusion_train``: training steps of the diffusion denoiser (v-prediction loss; images/s);
* ``regression_predict``: the regression U-Net's forward pass (images/s; the baseline of sampling);
* ``ddim``: DDIM draws with ``--steps`` steps (draws/s).

The data are random (only the cost is measured; the pipeline's
``results/superres/metrics.csv`` has the quality and the throughput of the real
run). Usage::

    python benchmarks/superres.py [--n 256] [--size 48] [--steps 10] [--threads 1]

The last line is machine-readable: ``RESULT diffusion_train_over_regression=...
ddim_over_regression_predict=...`` (time ratios; ~1 and ~``steps`` are expected).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from galmap.core.config import load_config
from galmap.nn.diffusion import ddim_sample, diffusion_loss
from galmap.nn.image2image import seeded_unet

REPO = Path(__file__).resolve().parents[1]


def _rate(fn, n_items: int, repeats: int = 2) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return repeats * n_items / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="images per timed pass")
    parser.add_argument(
        "--size", type=int, default=None, help="target stamp side, pixels (default: superres.target_px)"
    )
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps (default: superres.sample_steps)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_config(REPO / "config" / "config.yaml", REPO / "workflow" / "schemas" / "config.schema.yaml")
    sr = cfg["superres"]
    size = args.size or sr["target_px"]
    steps = args.steps or sr["sample_steps"]
    bs = sr["batch_size"]
    n_cond = 3 + int(sr["sersic_base"])  # DECaLS g, r, z (+ the Sérsic base)
    cond = torch.randn(args.n, n_cond, size, size)
    target = torch.randn(args.n, 1, size, size)
    mask = torch.ones_like(target, dtype=torch.bool)
    models = {k: seeded_unet(0, torch.device("cpu"), n_cond, sr["channels"], k) for k in ("regression", "diffusion")}
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, m in models.items()}
    gen = torch.Generator().manual_seed(0)

    def train_pass(kind: str) -> None:
        m, opt = models[kind], opts[kind]
        m.train()
        for i in range(0, args.n, bs):
            c, t, k = cond[i : i + bs], target[i : i + bs], mask[i : i + bs]
            loss = diffusion_loss(m, t, c, k, gen) if kind == "diffusion" else ((m(c) - t) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

    def predict_pass() -> None:
        with torch.no_grad():
            models["regression"].eval()
            for i in range(0, args.n, 64):
                models["regression"](cond[i : i + 64])

    def ddim_pass() -> None:
        models["diffusion"].eval()
        for i in range(0, args.n, 64):
            ddim_sample(models["diffusion"], cond[i : i + 64], 1, steps, 0.0, gen)

    rates = {
        "regression_train": _rate(lambda: train_pass("regression"), args.n),
        "diffusion_train": _rate(lambda: train_pass("diffusion"), args.n),
        "regression_predict": _rate(predict_pass, args.n),
        "ddim": _rate(ddim_pass, args.n, repeats=1),
    }
    print(f"U-Net channels {sr['channels']}, {size} x {size} px, batch {bs}, {args.threads} thread(s)")
    for name, rate in rates.items():
        unit = "draws/s" if name == "ddim" else "images/s"
        print(f"{name:>20}: {rate:9.1f} {unit}")
    train_ratio = rates["regression_train"] / rates["diffusion_train"]
    sample_ratio = rates["regression_predict"] / rates["ddim"]
    print(f"a diffusion training step costs {train_ratio:.2f}x a regression step; a {steps}-step DDIM draw "
          f"costs {sample_ratio:.1f}x a regression prediction")  # fmt: skip
    print(f"RESULT diffusion_train_over_regression={train_ratio:.3f} ddim_over_regression_predict={sample_ratio:.3f}")


if __name__ == "__main__":
    main()
