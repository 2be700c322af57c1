"""Is the data pipeline the VAE's bottleneck? Training throughput fed from HDF5 shards vs in-memory tensors.

Trains the same VAE (same seed, same number of steps) three ways and prints the
images per second of each, as a ratio to the in-memory baseline measured in the
same run:

* ``memory``: every normalised image already in one tensor (the ceiling);
* ``shards-cached``: :class:`galmap.nn.inputs.ShardStream` reading the HDF5 shards,
  kept in memory after the first read (the default config's case: all fit);
* ``shards-streamed``: the same with a cache of about one shard, so every epoch
  re-reads and re-normalises the shards in a background thread (the paper-scale case).

Usage (after the pipeline has made the preprocessed shards, or with --render N to
make a small mock first)::

    python benchmarks/vae_data.py [--images 'results/images/decals/shard-*.h5'] [--epochs 3]

The last line is machine-readable: ``RESULT cached_ratio=... streamed_ratio=...``.
"""

from __future__ import annotations

import argparse
import glob
import tempfile
import time
from pathlib import Path

import torch

from galmap.core.config import load_config
from galmap.latent.vae import ConvVAE, loader, make_step
from galmap.nn.inputs import ShardStream
from galmap.nn.training import TrainSettings, train

REPO = Path(__file__).resolve().parents[1]


def _render(n: int, out_dir: Path) -> list[str]:
    from galmap.core.io import write_shard
    from galmap.core.surveys import surveys_from_config
    from galmap.mock.population import draw_population
    from galmap.mock.render import render_shard
    from galmap.preprocess.stamps import preprocess_shard

    cfg = load_config(REPO / "config" / "config.yaml", REPO / "workflow" / "schemas" / "config.schema.yaml")
    cfg["mock"]["n_galaxies"] = n
    truth = draw_population(cfg)
    decals = surveys_from_config(cfg)["decals"]
    paths = []
    for k in range(4):
        rows = truth.iloc[k * n // 4 : (k + 1) * n // 4]
        shard = preprocess_shard(render_shard(rows, [decals], cfg["seed"], progress=False)["decals"], cfg["preprocess"])
        paths.append(str(out_dir / f"shard-{k:04d}.h5"))
        write_shard(paths[-1], shard)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default="results/images/decals/shard-*.h5", help="glob of preprocessed shards")
    ap.add_argument("--render", type=int, default=0, help="render this many mock galaxies instead")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(REPO / "config" / "config.yaml", REPO / "workflow" / "schemas" / "config.schema.yaml")
    params = cfg["vae"]
    tmp = tempfile.TemporaryDirectory()
    paths = sorted(glob.glob(args.images)) if not args.render else _render(args.render, Path(tmp.name))
    if not paths:
        raise SystemExit(f"no shards match {args.images!r}: run the pipeline first, or pass --render N")
    load = loader(params, cfg["seed"])
    bs = int(params["batch_size"])
    one_shard_mb = load(Path(paths[0])).nbytes / 2**20

    # the in-memory baseline: all training images in one tensor, shuffled per epoch
    parts = [load(Path(p)) for p in paths]
    parts = [p.select(p.split == "train") for p in parts]
    x_all = torch.cat([p.x for p in parts])
    w_all = torch.cat([p.w for p in parts])

    def memory_epoch(epoch: int):
        g = torch.Generator().manual_seed(epoch)
        idx = torch.randperm(len(x_all), generator=g)
        for s in range(0, len(idx), bs):
            yield x_all[idx[s : s + bs]], w_all[idx[s : s + bs]]

    feeds = {
        "memory": memory_epoch,
        "shards-cached": ShardStream(paths, load, "train", bs, 1, cache_mb=1e6).epoch,
        "shards-streamed": ShardStream(paths, load, "train", bs, 1, cache_mb=1.2 * one_shard_mb).epoch,
    }
    _, nb, h, _ = x_all.shape
    step = make_step(1.0, 1)
    settings = TrainSettings(max_epochs=args.epochs, patience=args.epochs + 1, learning_rate=3e-3, seed=1)
    rate = {}
    for name, feed in feeds.items():
        torch.manual_seed(0)
        model = ConvVAE(nb, h, int(params["latent_dim"]), params["channels"])
        t0 = time.perf_counter()
        train(model, step, feed, lambda: iter(()), settings, progress=False)
        seconds = time.perf_counter() - t0
        rate[name] = args.epochs * len(x_all) / seconds
        print(f"{name:16s} {rate[name]:8.1f} images/s  ({seconds:.1f} s for {args.epochs} epochs of {len(x_all)})")
    cached, streamed = rate["shards-cached"] / rate["memory"], rate["shards-streamed"] / rate["memory"]
    print(f"throughput vs in-memory tensors: cached {cached:.1%}, streamed {streamed:.1%} (target >= 90%)")
    print(f"RESULT cached_ratio={cached:.3f} streamed_ratio={streamed:.3f}")


if __name__ == "__main__":
    main()
