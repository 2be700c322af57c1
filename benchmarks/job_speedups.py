"""Speed-ups of pipeline jobs that keep their outputs: each measured against the way it was done before, in one run.

On a finished default run's results (``--run``: the directory holding ``results/``, e.g. the
repository after the default run; only read), CPU seconds
(``time.process_time``, one thread) of:

* ``domain_predict``: the predictions of every domain-adaptation method of one pair
  (:func:`galmap.domain.jobs.domain_predict_file`) with each shard read once for all the models
  (``new``), against reading the shards again for each model and for the AdaBN statistics
  (``baseline``: :func:`galmap.classify.cnn.predict` given the paths). The two prediction tables
  must be identical.

These machines are shared and noisy: only the ratio of two timings taken in the same run means
anything. Usage::

    python benchmarks/job_speedups.py --run . [--pair sdss] [--only domain_predict]

The last line is machine-readable: ``RESULT <name>_ratio=<new/baseline> ...``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]


def _cpu(fn):
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out


def domain_predict(run: Path, pair: str) -> tuple[float, float]:
    """CPU seconds (baseline, new) of the predictions of pair ``pair``; checks the tables are identical."""
    from galmap.classify.cnn import MorphologyCNN, predict, prediction_inputs
    from galmap.classify.targets import class_names
    from galmap.core.io import read_table
    from galmap.domain.adaptation import CNNEnsemble, adapt_batchnorm, held_out_galaxies, target_batches
    from galmap.nn.training import load_model

    res = run / "results"
    targets = read_table(res / "classify/targets.parquet")
    questions = list(class_names(read_table(res / "classify/classes.csv")))
    source = sorted(str(p) for p in (res / "images/decals").glob("shard-*.h5"))
    target = sorted(str(p) for p in (res / f"domain/{pair}/target").glob("shard-*.h5"))
    base, _ = load_model(res / "classify/cnn_image/model.pt", MorphologyCNN)
    others = {
        "dann": load_model(res / f"domain/{pair}/dann/model.pt", MorphologyCNN)[0],
        "distill": load_model(res / f"domain/{pair}/distill/model.pt", CNNEnsemble)[0],
    }
    held = held_out_galaxies(targets)

    def run_all(shards: dict[str, list]) -> pd.DataFrame:
        models = {"source_only": base, "adabn": adapt_batchnorm(base, target_batches(shards["target"], held, 256))}
        parts = [
            predict(m, shards[d], targets, questions, 256).assign(method=name, domain=d)
            for name, m in (models | others).items()
            for d in ("source", "target")
        ]
        return pd.concat(parts, ignore_index=True)

    t_base, old = _cpu(lambda: run_all({"source": source, "target": target}))
    t_new, new = _cpu(
        lambda: run_all(
            {
                d: [prediction_inputs(p, targets, questions) for p in ps]
                for d, ps in (("source", source), ("target", target))
            }
        )  # fmt: skip
    )
    pd.testing.assert_frame_equal(old, new, check_exact=True)
    print(f"domain_predict ({pair}): baseline {t_base:.1f} CPU-s, new {t_new:.1f} CPU-s, identical tables "
          f"({len(new)} rows)")  # fmt: skip
    return t_base, t_new


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a finished default run (results/ is read)")
    ap.add_argument("--pair", default="sdss", help="the domain pair of domain_predict")
    ap.add_argument("--only", nargs="*", default=None, help="measure only these")
    args = ap.parse_args()
    torch.set_num_threads(1)
    todo = {"domain_predict": lambda: domain_predict(args.run, args.pair)}
    out = {}
    for name, fn in todo.items():
        if args.only and name not in args.only:
            continue
        base, new = fn()
        out[name] = new / base
    print("RESULT " + " ".join(f"{k}_ratio={v:.3f}" for k, v in out.items()))


if __name__ == "__main__":
    main()
