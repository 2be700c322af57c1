"""The headline tables of one or two runs, side by side, as Markdown: read from the runs' metrics files.

Every number comes from a stage's own output table (``results/<stage>/metrics.csv`` and
friends), so the documentation's numbers are regenerated, never typed. Give each run's
working directory (the folder holding ``results/``) or its ``results/`` folder::

    python benchmarks/headline.py .                                  # the default sky
    python benchmarks/headline.py . runs/seed2027 --names "default sky" "seed 2027"
    python benchmarks/headline.py . runs/seed2027 --write docs/results.md

Tables (the held-out test split of each run; a table or column a run lacks is left blank):

* classification: accuracy and balanced accuracy of ``rf_latent`` and ``cnn_image`` per question
  (``classify/metrics.csv``), with ``chance_accuracy`` (always answering the training
  set's majority class) beside them, and CNN − forest in balanced accuracy with its paired
  bootstrap 68 % interval (``classify/comparison.csv``); after the tables, CNN − forest per
  run and its mean over the runs, with the number of questions within 3 and 5 points;
* Sérsic fits: median |Δn/n| and |ΔRe/Re| of the isolated single-Sérsic mock galaxies against
  the truth (``structure/sersic.parquet``, ``catalog/truth.parquet``), and whether their PSF varied;
* outliers: ROC area, recall at 1 % false positives, recall and false-positive rate of the
  flags (``outliers/metrics.csv``, rows ``all`` and ``none``);
* flow: closure Spearman r per parameter, sampled and central latents (``flow/closure_spearman.csv``);
* domain adaptation: per pair, mean over questions on the target survey per method: accuracy,
  change against ``source_only``, fraction of the drop recovered (``domain/metrics.csv``); and per
  pair the seed's table for bar and the mean (source, target without and with the best
  adaptation, 68 % bootstrap intervals, ``domain/summary.csv``);
* super-resolution: Re scatter (dex) and bias (%), PSNR (dB), SSIM per method (``superres/metrics.csv``);
  the structure table's scatter against Euclid per method (C, A, Gini, M20, Re in dex, the m = 2 arm
  amplitude) and the draws' coverage of the noiseless Re and pixels and invented-arms fraction
  (``superres/structure.csv``, ``superres/calibration.csv``);
* Hα: median pixel correlation, flux scatter and bias (dex) per subset, for the regression
  U-Net and, when run, the diffusion model (``halpha/metrics.csv``, ``halpha/diffusion/metrics.csv``).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd


def results_dir(path: str | Path) -> Path:
    """``path/results`` when it exists, else ``path`` itself."""
    path = Path(path)
    return path / "results" if (path / "results").is_dir() else path


def _read(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def classification(res: Path) -> pd.DataFrame | None:
    metrics = _read(res / "classify/metrics.csv")
    if metrics is None:
        return None
    values = ["accuracy"] + (["balanced_accuracy"] if "balanced_accuracy" in metrics.columns else [])
    table = metrics.pivot_table(index="question", columns="model", values=values, sort=False)
    cols = [(v, m) for v in values for m in ("rf_latent", "cnn_image") if (v, m) in table.columns]
    table = table[cols]
    table.columns = [f"{m} {v.replace('_', ' ')}" for v, m in cols]
    first = metrics.drop_duplicates("question").set_index("question")
    if "chance_accuracy" in first.columns:  # always the training set's majority class, on the same test galaxies
        table["chance"] = first["chance_accuracy"].reindex(table.index)
    comparison = _read(res / "classify/comparison.csv")
    if comparison is not None:  # cnn_image - rf_latent, balanced accuracy, paired bootstrap 68 %
        c = comparison[comparison["metric"] == "balanced_accuracy"].set_index("question")
        table["CNN − forest (balanced)"] = c["difference"].reindex(table.index)
        table["68 % interval"] = [
            f"[{lo:+.3f}, {hi:+.3f}]" if pd.notna(lo) else ""
            for lo, hi in zip(
                c["difference_lo68"].reindex(table.index), c["difference_hi68"].reindex(table.index), strict=True
            )
        ]
    if "n_test" in first.columns:
        table["n_test"] = first["n_test"].reindex(table.index)
    return table


def forest_vs_cnn(dirs: Sequence[Path], names: Sequence[str]) -> pd.DataFrame | None:
    """Issue 26's comparison: CNN − forest in balanced accuracy per question, each run and their mean.

    The mean over the runs is the figure of merit (the default sky and the second sky);
    the last rows count the questions within 3 and 5 points.
    """
    parts = {}
    for d, n in zip(dirs, names, strict=True):
        comparison = _read(d / "classify/comparison.csv")
        if comparison is None:
            continue
        c = comparison[comparison["metric"] == "balanced_accuracy"].set_index("question")
        parts[f"CNN − forest [{n}]"] = c["difference"]
    if not parts:
        return None
    table = pd.DataFrame(parts)
    table["mean over the runs"] = table.mean(axis=1)
    diff = table["mean over the runs"]
    counts = pd.DataFrame(
        {"mean over the runs": [float((diff <= 0.03).sum()), float((diff <= 0.05).sum())]},
        index=[f"questions within 3 points (of {len(diff)})", f"questions within 5 points (of {len(diff)})"],
    )
    return pd.concat([table, counts]).rename_axis("question")


def sersic(res: Path) -> pd.DataFrame | None:
    """The Sérsic fits (r-band rows; the shape is shared) of the isolated single-Sérsic mock galaxies
    against the truth, each galaxy observed through its own PSF and fitted with the nominal one."""
    fits, truth = _read(res / "structure/sersic.parquet"), _read(res / "catalog/truth.parquet")
    if fits is None or truth is None or "is_single_sersic" not in truth.columns:
        return None
    m = fits[fits["band"] == "r"].merge(truth[truth["is_single_sersic"]], on="id")
    m = m[m["n"].notna() & m["re_arcsec"].notna()]
    row = {
        "galaxies": len(m),
        "median abs(Δn/n)": (m["n"] / m["bulge_n"] - 1).abs().median(),
        "median abs(ΔRe/Re)": (m["re_arcsec"] / m["bulge_re_arcsec"] - 1).abs().median(),
        "PSF varied": any(c.startswith("psf_fwhm_") for c in truth.columns),
    }
    return pd.DataFrame({"value": row}).rename_axis("single-Sérsic galaxies")


def outliers(res: Path) -> pd.DataFrame | None:
    metrics = _read(res / "outliers/metrics.csv")
    if metrics is None:
        return None
    metrics = metrics.set_index("kind")
    row = {}
    if "all" in metrics.index:
        row["anomalies"] = metrics.loc["all", "n"]
        row["ROC area"] = metrics.loc["all"].get("roc_auc")
        recall = [c for c in metrics.columns if c.startswith("recall_at_fpr_")]
        for c in recall:
            row[c.replace("recall_at_fpr_", "recall at FPR ")] = metrics.loc["all", c]
        row["recall of the flags"] = metrics.loc["all", "flagged_fraction"]
    if "none" in metrics.index:
        row["FPR of the flags"] = metrics.loc["none", "flagged_fraction"]
    return pd.DataFrame({"value": row}).rename_axis("outliers")


def flow(res: Path) -> pd.DataFrame | None:
    summary = _read(res / "flow/closure_spearman.csv")
    if summary is None:
        return None
    table = summary.pivot(index="parameter", columns="latent", values="spearman_r")  # NaN kept: unmeasured
    table = table.reindex(
        index=list(dict.fromkeys(summary["parameter"])), columns=list(dict.fromkeys(summary["latent"]))
    )
    table.columns = [f"Spearman r ({c})" for c in table.columns]
    return table


def domain(res: Path) -> pd.DataFrame | None:
    metrics = _read(res / "domain/metrics.csv")
    if metrics is None:
        return None
    if "pair" not in metrics.columns:  # a run from before domain.pairs: its one pair
        metrics = metrics.assign(pair="bass_mzls")
    mean = metrics[metrics["question"] == "mean"]
    tables = []
    for pair, m in mean.groupby("pair", sort=False):
        src = m[(m["method"] == "source_only") & (m["domain"] == "source")]["accuracy"]
        tgt = m[m["domain"] == "target"].set_index("method")
        table = tgt[["accuracy", "change", "recovered"]].rename(
            columns={"accuracy": "target accuracy", "change": "change vs source_only"}
        )
        if len(src):
            table.insert(0, "source accuracy (source_only)", float(src.iloc[0]))
        table.index = [f"{pair}: {method}" for method in table.index]
        tables.append(table)
    return pd.concat(tables).rename_axis("pair: method")


def _interval(value: float, lo: float, hi: float) -> str:
    """``0.682 [0.668, 0.697]``."""
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def domain_summary(res: Path) -> pd.DataFrame | None:
    """The seed's table per pair for bar and the mean of the questions (``domain/summary.csv``): source,
    target without adaptation, target with the best method (chosen on the validation split), each with its
    68 % bootstrap interval; the drop (± paired s.e.) and the fraction of it recovered."""
    summary = _read(res / "domain/summary.csv")
    if summary is None:
        return None
    rows = {}
    for _, r in summary.iterrows():
        rows[f"{r['pair']}: {r['question']}"] = {
            "source": _interval(r["source"], r["source_lo"], r["source_hi"]),
            "target, no adaptation": _interval(r["unadapted"], r["unadapted_lo"], r["unadapted_hi"]),
            "target, adapted": f"{_interval(r['adapted'], r['adapted_lo'], r['adapted_hi'])} ({r['method']})",
            "drop (points)": f"{100 * r['drop']:.1f} ± {100 * r['drop_se']:.1f}"
            + ("" if r["significant"] else " (not significant)"),
            "recovered": r["recovered"],
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("pair: question")


def domain_worst_question(res: Path) -> pd.DataFrame | None:
    """Per pair, issue 28's target "for the best method, no question gets worse than its unadapted value by more
    than its 68 % interval": the best method (``domain/summary.csv``), its worst question's paired change against
    the unadapted CNN (target test split) with the 68 % bootstrap interval, and whether the target is met (no
    question's interval lies wholly below 0)."""
    metrics, summary = _read(res / "domain/metrics.csv"), _read(res / "domain/summary.csv")
    if metrics is None or summary is None or "change_hi" not in metrics.columns:
        return None
    rows = {}
    for pair, best in summary.drop_duplicates("pair").set_index("pair")["method"].items():
        m = metrics[(metrics["pair"] == pair) & (metrics["method"] == best) & (metrics["domain"] == "target")]
        per_q = m[m["question"] != "mean"]
        if per_q.empty:
            continue
        w = per_q.loc[per_q["change"].idxmin()]
        worse = per_q.loc[per_q["change_hi"] < 0, "question"].tolist()
        rows[pair] = {
            "best method": best,
            "worst question": w["question"],
            "its change (points) [68 %]": f"{100 * w['change']:+.1f} [{100 * w['change_lo']:+.1f}, "
            f"{100 * w['change_hi']:+.1f}]",
            "worse beyond the interval": ", ".join(worse) or "none",
            "met": not worse,
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("pair") if rows else None


def superres(res: Path) -> pd.DataFrame | None:
    metrics = _read(res / "superres/metrics.csv")
    if metrics is None:
        return None
    cols = ["re_log_scatter_dex", "re_bias_percent", "psnr_db", "ssim", "n_galaxies"]
    return metrics.set_index("method")[[c for c in cols if c in metrics.columns]]


def superres_structure(res: Path) -> pd.DataFrame | None:
    table = _read(res / "superres/structure.csv")
    if table is None:
        return None
    wanted = ["concentration", "asymmetry", "gini", "m20", "re_arcsec", "arm_m2"]
    out = table.pivot(index="method", columns="quantity", values="scatter")[wanted]
    out.columns = [f"{q} scatter" for q in wanted]
    cal = _read(res / "superres/calibration.csv")
    if cal is not None:
        v = cal.set_index("metric")["value"]
        for key in ("re_coverage_noiseless", "pixel_coverage_noiseless", "invented_arms_fraction"):
            if key in v.index:
                out.loc["diffusion_draws", key] = float(v[key])
    return out


def halpha(res: Path) -> pd.DataFrame | None:
    tables = []
    for model, path in (("regression", "halpha/metrics.csv"), ("diffusion", "halpha/diffusion/metrics.csv")):
        metrics = _read(res / path)
        if metrics is None:
            continue
        cols = ["pixel_corr_median", "flux_log_scatter_dex", "flux_log_ratio_median_dex", "n_galaxies"]
        t = metrics.set_index("subset")[cols]
        t.index = [f"{model}, {s}" for s in t.index]
        tables.append(t)
    return pd.concat(tables).rename_axis("model, subset") if tables else None


def unified(res: Path) -> pd.DataFrame | None:
    """The unified latent space's measured uses against the issue's goals (``unified/metrics.csv``, no translations)."""
    metrics = _read(res / "unified/metrics.csv")
    if metrics is None:
        return None
    m = metrics[(metrics["use"] != "translation") | metrics["goal"].notna()]
    index = m["use"] + ": " + m["source"].astype(str) + ("→" + m["target"].fillna("").astype(str)).str.rstrip("→")
    t = m.assign(row=index + " " + m["metric"]).set_index("row")[["value", "reference", "met"]]
    return t.rename_axis("use: survey(s) metric")


def realism(res: Path) -> pd.DataFrame | None:
    """Issue 27: the classifier two-sample test (ROC AUC, real vs mock Galaxy Zoo DECaLS images) and the vote KS."""
    c2st = _read(res / "realism/c2st.csv")
    votes = _read(res / "realism/votes.csv")
    if c2st is None and votes is None:
        return None
    row = {}
    if c2st is not None:
        for comparison, t in c2st[c2st["statistic"] == "classifier"].groupby("comparison"):
            row[f"C2ST ROC AUC, {comparison.replace('_', ' ')}"] = t["roc_auc"].iloc[0]
    if votes is not None:
        for _, v in votes.iterrows():
            row[f"KS {v['column']}"] = v["ks"]
    return pd.DataFrame({"value": row}).rename_axis("realism")


TABLES: dict[str, Callable[[Path], pd.DataFrame | None]] = {
    "Classification (test split per question; balanced accuracy: mean recall over classes)": classification,
    "Sérsic fits against the truth (isolated single-Sérsic mock galaxies, r band)": sersic,
    "Outliers (injected anomalies against the truth)": outliers,
    "Flow closure (requested vs measured)": flow,
    "Domain adaptation (mean over questions, target survey)": domain,
    "Domain adaptation per pair, bar and the mean over questions (test split, 68 % bootstrap intervals)": (
        domain_summary
    ),
    "Domain adaptation, the best method's worst question (change vs no adaptation, 68 % bootstrap interval)": (
        domain_worst_question
    ),
    "Super-resolution (DESI to Euclid, held-out galaxies)": superres,
    "Super-resolution structure against Euclid (scatter after removing the bias; draws' 16-84 % coverage)": (
        superres_structure
    ),
    "Hα from u, g, r, i, z (held-out galaxies)": halpha,
    "Unified latent space (held-out galaxies; reference: the baseline or dedicated model)": unified,
    "Realism: mock vs real Galaxy Zoo DECaLS (ROC AUC 0.5 = indistinguishable; vote-fraction KS vs 4,000 real rows)": (
        realism
    ),
}


FOREST_VS_CNN = "Forest on the latents against the CNN on the images (balanced accuracy, CNN − forest)"


def side_by_side(tables: Sequence[pd.DataFrame | None], names: Sequence[str]) -> pd.DataFrame | None:
    """The runs' tables joined on their index, each column named ``<column> [<run>]`` when there are several."""
    present = [(t, n) for t, n in zip(tables, names, strict=True) if t is not None]
    if not present:
        return None
    if len(names) == 1:
        return present[0][0]
    parts = [t.rename(columns=lambda c, n=n: f"{c} [{n}]") for t, n in present]
    return pd.concat(parts, axis=1, sort=False)


def _cell(v) -> str:
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.0f}" if v.is_integer() and abs(v) >= 10 else f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def markdown(table: pd.DataFrame) -> str:
    """A pipe table: the index as the first column."""
    head = [table.index.name or "", *map(str, table.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for idx, row in table.iterrows():
        lines.append("| " + " | ".join([str(idx), *(_cell(v) for v in row.tolist())]) + " |")
    return "\n".join(lines)


def headline(runs: Sequence[str | Path], names: Sequence[str]) -> str:
    """The Markdown document of every headline table for ``runs`` (named ``names``)."""
    dirs = [results_dir(r) for r in runs]
    out = [
        "# Results",
        "",
        "Generated by `benchmarks/headline.py` from the runs' metrics files; do not edit by hand.",
        "",
    ]
    out += [f"- {n}: `{r}`" for n, r in zip(names, runs, strict=True)] + [""]
    for title, read in TABLES.items():
        table = side_by_side([read(d) for d in dirs], names)
        out += [f"## {title}", "", markdown(table) if table is not None else "(not in these runs)", ""]
    summary = forest_vs_cnn(dirs, names)
    if summary is not None:
        out += [f"## {FOREST_VS_CNN}", "", markdown(summary), ""]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories (holding results/) or results/ folders")
    parser.add_argument("--names", nargs="+", help="a name per run (default: the paths)")
    parser.add_argument("--write", type=Path, help="also write the Markdown to this file (e.g. docs/results.md)")
    args = parser.parse_args(argv)
    names = args.names or [str(r) for r in args.runs]
    if len(names) != len(args.runs):
        parser.error("give one name per run")
    text = headline(args.runs, names)
    print(text)
    if args.write:
        args.write.write_text(text)


if __name__ == "__main__":
    main()
