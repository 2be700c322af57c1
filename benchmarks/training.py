"""Does the shared training loop keep the device busy? Images/s with the metrics read once per epoch vs every batch.

:func:`galmap.nn.training.train` sums each batch's metrics on the device and reads
them once per epoch; ``TrainSettings(sync_every_batch=True)`` reads them after every
batch (``float(loss)``: one host-device synchronisation per step, the old loop). This
times both, in the same run, for two of the project's networks, each with its default
config and training step:

* ``vae``: the convolutional VAE (:mod:`galmap.latent.vae`, ``vae.channels``, ``vae.batch_size``)
  on 3-band stamps of ``vae``'s survey size (64 px);
* ``unet``: the regression U-Net of the image-to-image stages (:mod:`galmap.nn.image2image`,
  ``superres.channels``, ``superres.batch_size``) on 48-px stamps with 4 condition bands.

The data are random (only the cost is measured). Each measurement trains a fresh,
identically seeded model for ``--epochs`` epochs, timed by the loop's own history. After
one warm-up per network, each of ``--repeats`` repeats trains with the two loops in
alternating order (new, old, old, new; then old, new, new, old; ...) and takes each
loop's fastest epoch (other processes on a shared machine only ever slow an epoch
down); the ratio new/old of images/s is the median of the repeats' ratios. On the CPU
nothing waits for a device, so ~1.00 is expected (>= 0.95: no slower within noise); on
CUDA the ratio shows what the one synchronisation per epoch gains. Usage::

    python benchmarks/training.py [--n 128] [--epochs 4] [--repeats 3] [--threads 1] [--device auto]

The last line is machine-readable: ``training ratio_vae=... ratio_unet=...``.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch

from galmap.core.config import load_config
from galmap.core.device import pick_device
from galmap.latent.vae import ConvVAE, make_step
from galmap.nn.image2image import pixel_step, seeded_unet
from galmap.nn.training import TrainSettings, split_batches, train

REPO = Path(__file__).resolve().parents[1]


def _network(name: str, cfg: dict, n: int, device: torch.device):
    """``(build, step, tensors, batch_size)`` of a network on random data of the default config's sizes."""
    g = torch.Generator().manual_seed(0)
    if name == "vae":
        p, size = cfg["vae"], cfg["surveys"][cfg["vae"]["survey"]]["stamp_px"]
        x = torch.randn(n, 3, size, size, generator=g)
        w = torch.rand(n, 3, size, size, generator=g)

        def build():
            torch.manual_seed(0)
            return ConvVAE(3, size, int(p["latent_dim"]), p["channels"]).to(device)

        return build, make_step(float(p["kl_weight"]), int(p["kl_warmup_epochs"])), (x, w), int(p["batch_size"])
    p, size = cfg["superres"], int(cfg["superres"]["target_px"])
    n_cond = 3 + int(p["sersic_base"])  # DECaLS g, r, z (+ the Sérsic base)
    x = torch.randn(n, n_cond, size, size, generator=g)
    y = torch.randn(n, 1, size, size, generator=g)
    w = torch.rand(n, 1, size, size, generator=g)
    return (
        lambda: seeded_unet(0, device, n_cond, p["channels"]),
        pixel_step("regression", device),
        (x, y, w),
        int(p["batch_size"]),
    )


def _epoch_seconds(net, n: int, epochs: int, sync: bool) -> np.ndarray:
    """The training seconds of each epoch of a fresh model (the loop's own history)."""
    build, step, tensors, bs = net
    split = np.array(["train"] * n)
    settings = TrainSettings(
        max_epochs=epochs, patience=epochs, learning_rate=1e-3, seed=1, keep="last", sync_every_batch=sync
    )
    _, history = train(
        build(), step, split_batches(split, "train", bs, 1, True, *tensors), lambda: iter(()), settings, progress=False
    )
    return history["seconds"].to_numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=128, help="training images per epoch")
    ap.add_argument("--epochs", type=int, default=4, help="epochs per training (4 trainings per repeat)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads of PyTorch")
    ap.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    cfg = load_config(REPO / "config" / "config.yaml", REPO / "workflow" / "schemas" / "config.schema.yaml")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} thread(s)"
    print(f"{args.n} random images per epoch, {args.epochs} epochs per training, on {where}")
    print("images/s of the fastest epoch: metrics read once per epoch / every batch (the old loop)")
    ratios = {}
    for name in ("vae", "unet"):
        net = _network(name, cfg, args.n, device)
        _epoch_seconds(net, args.n, 1, False)  # warm-up (allocations, kernels)
        per_repeat = []
        for r in range(args.repeats):
            # new, old, old, new (then old, new, new, old): a drift in the machine's load cancels to first order
            order = (False, True, True, False) if r % 2 == 0 else (True, False, False, True)
            seconds = {False: [], True: []}
            for sync in order:
                seconds[sync].extend(_epoch_seconds(net, args.n, args.epochs, sync))
            rate = {sync: args.n / min(s) for sync, s in seconds.items()}  # each loop's fastest epoch
            per_repeat.append(rate[False] / rate[True])
            print(f"  {name:5s} repeat {r + 1}: {rate[False]:8.1f} / {rate[True]:8.1f}   {per_repeat[-1]:.3f}")
        ratios[name] = statistics.median(per_repeat)
        print(f"  {name:5s} median ratio (once per epoch / every batch): {ratios[name]:.3f}")
    print(f"training ratio_vae={ratios['vae']:.3f} ratio_unet={ratios['unet']:.3f}")


if __name__ == "__main__":
    main()
