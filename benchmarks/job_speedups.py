"""Speed-ups of pipeline jobs that keep their outputs: each measured against the way it was done before, in one run.

On a finished default run's results (``--run``: the directory holding ``results/``, e.g. the
repository after the default run; only read), CPU seconds
(``time.process_time``, one thread) of:

* ``domain_predict``: the predictions of every domain-adaptation method of one pair
  (:func:`galmap.domain.jobs.domain_predict_file`) with each shard read once for all the models
  (``new``), against reading the shards again for each model and for the AdaBN statistics
  (``baseline``: :func:`galmap.classify.cnn.predict` given the paths). The two prediction tables
  must be identical.

* ``preprocess``: the first ``--galaxies`` galaxies of shard 0000 of every survey (``data/mock/``), preprocessed
  in fresh interpreters as the workflow runs them, one per shard for all surveys
  (:func:`galmap.preprocess.jobs.preprocess_files`, ``new``) against one per survey and shard
  (:func:`galmap.preprocess.jobs.preprocess_file`, ``baseline``): CPU seconds of the child processes, start-up
  and imports included (not Snakemake's own script preamble). The output files must be identical, byte for byte.

These machines are shared and noisy: only the ratio of two timings taken in the same run means
anything. Usage::

    python benchmarks/job_speedups.py --run . [--pair sdss] [--galaxies 40] [--only domain_predict preprocess]

The last line is machine-readable: ``RESULT <name>_ratio=<new/baseline> ...``.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import resource
import subprocess
import sys
import tempfile
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


def _default_config() -> dict:
    from galmap.core.config import load_yaml

    return load_yaml(REPO / "config" / "config.yaml")


_PREPROCESS_JOB = """
import json, sys
from galmap.core.joblog import job_log
from galmap.preprocess import jobs
a = json.loads(sys.argv[1])
with job_log(a["log"]):
    if a["one"]:
        jobs.preprocess_file(a["params"], a["raw"], a["out"], a["failures"], catalog_path=a["catalog"])
    else:
        jobs.preprocess_files(a["params"], a["raw"], a["out"], a["failures"], catalog_path=a["catalog"])
"""


def _children_cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def preprocess(run: Path, galaxies: int) -> tuple[float, float]:
    """CPU seconds (baseline, new) of preprocessing shard 0000's first ``galaxies`` of every survey in fresh
    interpreters: one per survey, or one for all; checks that the images and failure tables are the same bytes."""
    from galmap.core.io import Shard, read_shard, write_shard
    from galmap.preprocess.settings import survey_params

    cfg = _default_config()
    surveys = sorted(p.parent.name for p in (run / "data/mock").glob("*/shard-0000.h5"))
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory(prefix="preprocess-bench-") as tmp:
        raw = {}
        for s in surveys:
            shard = read_shard(run / f"data/mock/{s}/shard-0000.h5")
            part = Shard(shard.images[:galaxies], shard.ivar[:galaxies], shard.ids[:galaxies], dict(shard.attrs))
            raw[s] = str(Path(tmp, f"raw-{s}.h5"))
            write_shard(raw[s], part)
        params = {s: survey_params(cfg["preprocess"], s) for s in surveys}
        catalog = str(run / "results/catalog/catalog.parquet")

        def job(args: dict) -> None:
            subprocess.run([sys.executable, "-c", _PREPROCESS_JOB, json.dumps(args)], env=env, check=True)

        def out(kind: str, s: str) -> tuple[str, str]:
            return str(Path(tmp, kind, f"{s}.h5")), str(Path(tmp, kind, f"failures-{s}.csv"))

        t0 = _children_cpu()
        for s in surveys:
            o, f = out("baseline", s)
            job({"one": True, "params": params[s], "raw": raw[s], "out": o, "failures": f, "catalog": catalog,
                 "log": str(Path(tmp, f"baseline-{s}.log"))})  # fmt: skip
        t1 = _children_cpu()
        outs = [out("new", s) for s in surveys]
        job({"one": False, "params": params, "raw": [raw[s] for s in surveys], "out": [o for o, _ in outs],
             "failures": [f for _, f in outs], "catalog": catalog, "log": str(Path(tmp, "new.log"))})  # fmt: skip
        t2 = _children_cpu()
        for s in surveys:
            for a, b in zip(out("baseline", s), out("new", s), strict=True):
                assert filecmp.cmp(a, b, shallow=False), f"preprocess: {Path(b).name} differs"
    t_base, t_new = t1 - t0, t2 - t1
    print(f"preprocess ({galaxies} galaxies of shard 0000 of {', '.join(surveys)}): baseline {t_base:.1f} CPU-s "
          f"({len(surveys)} processes), new {t_new:.1f} CPU-s (1 process): {(t_base - t_new) / (len(surveys) - 1):.1f} "
          f"CPU-s saved per process; identical files")  # fmt: skip
    return t_base, t_new


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a finished default run (results/ is read)")
    ap.add_argument("--pair", default="sdss", help="the domain pair of domain_predict")
    ap.add_argument("--galaxies", type=int, default=40, help="galaxies of each survey preprocess measures")
    ap.add_argument("--only", nargs="*", default=None, help="measure only these")
    args = ap.parse_args()
    torch.set_num_threads(1)
    todo = {
        "domain_predict": lambda: domain_predict(args.run, args.pair),
        "preprocess": lambda: preprocess(args.run, args.galaxies),
    }
    out = {}
    for name, fn in todo.items():
        if args.only and name not in args.only:
            continue
        base, new = fn()
        out[name] = new / base
    print("RESULT " + " ".join(f"{k}_ratio={v:.3f}" for k, v in out.items()))


if __name__ == "__main__":
    main()
