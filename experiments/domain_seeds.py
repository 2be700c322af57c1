"""The domain stage's headline: its adaptation networks (DANN, distillation) trained with several seeds, per pair.

The default run trains each network once (``seed``). This script trains them again with
``--seeds`` training seeds (the run's own seed first: its models are reused when ``--reuse``),
with the stage's own job functions and each pair's settings (``domain.pairs`` overrides), scores
every seed's predictions with the stage's metrics (:func:`galmap.domain.adaptation.domain_metrics`,
68 % bootstrap intervals on the test galaxies) and reports the mean over the seeds, and their
standard deviation, per pair, method and question (the headline). Source-only and AdaBN have no
training seed (they are the same in every seed). The best method of the summary is the one the
validation split picks most often over the seeds (:func:`galmap.domain.adaptation.best_method`).

    PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 10 python experiments/domain_seeds.py RUN --work runs/domain-seeds \
        [--pairs sdss] [--seeds 3] [--reuse]

(``RUN``: a default-sky run directory holding results/classify, results/images and results/domain/<pair>/target;
one seed of a pair costs what the pair's domain_dann + domain_distill + domain_predict jobs cost.) Writes
``seed_metrics.csv`` (every seed's metrics), ``metrics_mean.csv`` (mean and sd over seeds) and
``summary_mean.csv`` (the seed's table: source, target without and with adaptation, bar and the mean) to --work.
"""

from __future__ import annotations

import argparse
import shutil
from collections import Counter
from pathlib import Path

import pandas as pd
import torch

from galmap.classify.targets import class_names
from galmap.core.config import load_config
from galmap.core.io import read_table, write_table
from galmap.domain.adaptation import best_method, domain_metrics, domain_summary
from galmap.domain.jobs import domain_dann_file, domain_distill_file, domain_predict_file
from galmap.domain.pairs import domain_pairs, pair_settings

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="the run directory (holding results/)")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--config", type=Path, nargs="*", default=[REPO / "config" / "config.yaml"])
    ap.add_argument("--pairs", nargs="*", help="default: every pair of domain.pairs")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds: seed, seed + 1, ... (at least 3)")
    ap.add_argument("--reuse", action="store_true", help="the run's own models for its seed (no retraining)")
    ap.add_argument("--only", type=int, help="train and predict this one seed and stop (to run seeds side by side)")
    args = ap.parse_args()
    if args.only is None and args.seeds < 3:
        ap.error("the headline is a mean over at least 3 training seeds")
    torch.set_num_threads(1)
    cfg = load_config(args.config, REPO / "workflow/schemas/config.schema.yaml")
    dom, seed = cfg["domain"], int(cfg["seed"])
    res = args.run / "results"
    targets_path, classes_path = str(res / "classify/targets.parquet"), str(res / "classify/classes.csv")
    classifier = str(res / "classify/cnn_image/model.pt")
    targets, classes = read_table(targets_path), class_names(read_table(classes_path))
    sources = sorted(str(p) for p in (res / "images" / cfg["vae"]["survey"]).glob("shard-*.h5"))
    all_metrics, summaries = [], []
    for pair in args.pairs or list(domain_pairs(dom)):
        target_paths = sorted(str(p) for p in (res / "domain" / pair / "target").glob("shard-*.h5"))
        if not target_paths:
            raise SystemExit(f"no target shards of pair {pair!r} in {res / 'domain' / pair / 'target'}")
        dann, distill = (pair_settings(dom, pair, m) | {"device": "cpu"} for m in ("dann", "distill"))
        bests = []
        for s in [args.only] if args.only is not None else range(seed, seed + args.seeds):
            out = args.work / pair / f"seed{s}"
            out.mkdir(parents=True, exist_ok=True)
            for method, train, params in (("dann", domain_dann_file, dann), ("distill", domain_distill_file, distill)):
                model = out / f"{method}.pt"
                run_model = res / "domain" / pair / method / "model.pt"
                if model.exists():
                    continue
                if args.reuse and s == seed and run_model.exists():
                    shutil.copy(run_model, model)
                elif method == "dann":
                    train(params, s, targets_path, classes_path, classifier, sources, target_paths, str(model),
                          str(out / "dann-history.csv"))  # fmt: skip
                else:
                    train(params, s, targets_path, classifier, sources, target_paths, str(model),
                          str(out / "distill-history.csv"))  # fmt: skip
            preds_path = out / "predictions.parquet"
            if not preds_path.exists():
                domain_predict_file(dom["batch_size"], targets_path, classes_path, classifier, str(out / "dann.pt"),
                                    str(out / "distill.pt"), None, sources, target_paths, str(preds_path),
                                    str(out / "failures.csv"))  # fmt: skip
            if args.only is not None:
                continue
            preds = read_table(preds_path)
            groups = {(m, d): g.drop(columns=["method", "domain"]) for (m, d), g in preds.groupby(["method", "domain"])}
            metrics = domain_metrics(groups, targets, classes, dom["bootstrap_resamples"], seed)
            all_metrics.append(metrics.assign(pair=pair, train_seed=s))
            bests.append(best_method(groups))
            print(f"{pair} seed {s}: best on validation {bests[-1]}", flush=True)
        if args.only is not None:
            continue
        best = Counter(bests).most_common(1)[0][0]
        seeds = pd.concat([m for m in all_metrics if m["pair"].iloc[0] == pair])
        mean = seeds.groupby(["question", "method", "domain"], sort=False).mean(numeric_only=True).reset_index()
        summaries.append(domain_summary(mean, best).assign(pair=pair, seeds=args.seeds))
    if args.only is not None:
        return
    seeds = pd.concat(all_metrics, ignore_index=True)
    keys = ["pair", "question", "method", "domain"]
    grouped = seeds.groupby(keys, sort=False)
    table = grouped[["accuracy", "change", "recovered"]].mean()
    table = table.join(grouped[["accuracy", "change", "recovered"]].std(ddof=1).add_suffix("_sd_over_seeds"))
    table = table.join(grouped[["accuracy_lo", "accuracy_hi", "change_lo", "change_hi"]].mean()).reset_index()
    write_table(args.work / "seed_metrics.csv", seeds)
    write_table(args.work / "metrics_mean.csv", table)
    summary = pd.concat(summaries, ignore_index=True)
    write_table(args.work / "summary_mean.csv", summary)
    mean_rows = table[(table["question"] == "mean") & (table["domain"] == "target")]
    print(mean_rows.round(4).to_string(index=False))
    print("\nthe seed's table (mean over seeds; intervals: the seeds' mean 68 % bootstrap bounds):")
    print(summary.round(4).to_string(index=False))


if __name__ == "__main__":
    main()
