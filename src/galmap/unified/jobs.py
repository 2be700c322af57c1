"""The unified stage's jobs: train the model; encode, translate and score (files in, files out)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from galmap.core.failures import FailureLog
from galmap.core.io import atomic_path, read_table, training_checkpoint, write_table

log = logging.getLogger("galmap")


def _stack(image_paths: Mapping[str, Sequence[str]], params: Mapping[str, Any], seed: int, failures=None):
    from galmap.unified.data import load_surveys

    surveys = list(params["surveys"]) + [s for s in params.get("decode_only", []) if s not in params["surveys"]]
    missing = [s for s in surveys if s not in image_paths]
    if missing:
        raise ValueError(f"unified: no shards given for survey(s) {missing}")
    return load_surveys(
        {s: list(image_paths[s]) for s in surveys},
        seed,
        float(params["val_fraction"]),
        float(params["test_fraction"]),
        float(params["sys_error"]),
        failures,
    )


def unified_train_file(
    params: Mapping[str, Any],
    seed: int,
    image_paths: Mapping[str, Sequence[str]],
    model_path: str,
    history_path: str,
    threads: int = 1,
) -> None:
    """Train the unified model on every survey's preprocessed shards (``image_paths``: survey -> shards)."""
    import torch

    from galmap.nn.training import save_model
    from galmap.unified.train import train_unified

    torch.set_num_threads(max(1, threads))
    stack = _stack(image_paths, params, seed)
    log.info("unified: %d galaxies; per survey %s", len(stack), {s: int(stack.has(s).sum()) for s in stack.surveys})
    with training_checkpoint(model_path) as checkpoint:
        model, history, meta = train_unified(stack, params, seed, checkpoint)
        save_model(model_path, model, meta)
        write_table(history_path, history)


def _examples(model, stack, post, n: int) -> dict[str, Any]:
    """Test galaxies seen by every encoder survey, spread in brightness: real and translated stamps (image units)."""
    from galmap.nn.inputs import denormalise
    from galmap.unified.evaluate import translate

    held = stack.split == "test"
    full = held & np.all([stack.has(s) for s in stack.surveys], axis=0)
    cand = np.flatnonzero(full)
    if not len(cand):
        return {}
    first = stack.surveys[0]
    bright = stack.x[first][cand].flatten(1).amax(1).numpy()
    pick = cand[np.argsort(-bright)][np.linspace(0, len(cand) - 1, min(n, len(cand))).astype(int)]
    out: dict[str, Any] = {"ids": stack.ids[pick].astype(str)}
    for s in stack.surveys:
        soft = stack.attrs[s]["norm_softening"]
        out[f"real/{s}"] = denormalise(stack.x[s][pick], soft).numpy() * (stack.w[s][pick].numpy() > 0)
        for name, (mu, _, _) in post.items():
            out[f"from_{name}/{s}"] = denormalise(translate(model, mu[pick], s), soft).numpy()
    return out


def _write_examples(path: str, examples: Mapping[str, Any], stack, sources: Sequence[str]) -> None:
    import h5py

    with atomic_path(path, ".h5") as tmp, h5py.File(tmp, "w") as fh:
        fh.create_dataset("ids", data=np.asarray(examples.get("ids", []), dtype="S"))
        for key, value in examples.items():
            if key != "ids":
                fh.create_dataset(key, data=np.asarray(value, np.float32), compression="gzip")
        fh.attrs["surveys"] = list(stack.surveys)
        fh.attrs["sources"] = list(sources)
        for s in stack.surveys:
            fh.attrs[f"bands_{s}"] = [str(b) for b in stack.attrs[s]["bands"]]
            fh.attrs[f"pixscale_{s}"] = float(stack.attrs[s]["pixscale_arcsec"])
            fh.attrs[f"sky_sigma_{s}"] = [float(v) for v in stack.attrs[s].get("sky_sigma", [np.nan])]


def _goal_rows(
    retrieval: pd.DataFrame,
    invariance: pd.DataFrame,
    classification: pd.DataFrame,
    reference_ba: float,
    translation: pd.DataFrame,
    halpha: pd.DataFrame | None,
    halpha_ref: pd.DataFrame | None,
    euclid: pd.DataFrame | None,
    goals: Mapping[str, float],
) -> pd.DataFrame:
    """``metrics.csv``: one row per measured use: value, its reference, the issue's goal and whether it is met."""
    rows = []

    def add(use, source, target, metric, value, reference, goal, met):
        rows.append({"use": use, "source": source, "target": target, "metric": metric, "value": value,
                     "reference": reference, "goal": goal,
                     "met": None if not np.isfinite(goal) else bool(met) and bool(np.isfinite(value))})  # fmt: skip

    uni = retrieval[retrieval["method"] == "unified"].set_index(["source", "target"])
    base = retrieval[retrieval["method"] == "measured"].set_index(["source", "target"])
    for (a, b), r in uni.iterrows():
        ref = float(base.loc[(a, b), "top1"])
        add("retrieval", a, b, "top1", float(r["top1"]), ref, goals["retrieval_top1"],
            r["top1"] >= goals["retrieval_top1"] and r["top1"] > ref)  # fmt: skip
    for _, r in invariance.iterrows():
        add("invariance", r["surveys"], "", f"above_chance_{r['latent']}", float(r["above_chance"]),
            float(r["chance"]), goals["invariance_above_chance"],
            r["above_chance"] <= goals["invariance_above_chance"])  # fmt: skip
    mean_ba = classification.groupby("model")["balanced_accuracy"].mean()
    dec = float(mean_ba.get("unified_decals", np.nan))
    for model, v in mean_ba.items():
        name = str(model).removeprefix("unified_")
        if name == "decals":
            add(
                "classification",
                name,
                "",
                "balanced_accuracy_mean",
                float(v),
                reference_ba,
                goals["classification_decals_points"],
                reference_ba - v <= goals["classification_decals_points"] / 100,
            )
        else:
            add(
                "classification",
                name,
                "",
                "balanced_accuracy_mean",
                float(v),
                dec,
                goals["classification_transfer_points"],
                dec - v <= goals["classification_transfer_points"] / 100,
            )
    for _, r in translation.iterrows():
        add("translation", r["source"], r["target"], "ssim_median", float(r["ssim_median"]), np.nan, np.nan, True)
        add("translation", r["source"], r["target"], "chi2_nu_median", float(r["chi2_nu_median"]), np.nan, np.nan, True)
    if halpha is not None:
        ref = halpha_ref.set_index("subset") if halpha_ref is not None else None
        for _, r in halpha.iterrows():
            sub = r["subset"]
            rs = None if ref is None or sub not in ref.index else ref.loc[sub]
            v, rv = float(r["flux_log_scatter_dex"]), (np.nan if rs is None else float(rs["flux_log_scatter_dex"]))
            add("translation", "sdss", f"halpha ({sub})", "flux_log_scatter_dex", v, rv, goals["halpha_flux_dex"],
                v - rv <= goals["halpha_flux_dex"])  # fmt: skip
            v, rv = float(r["pixel_corr_median"]), (np.nan if rs is None else float(rs["pixel_corr_median"]))
            add("translation", "sdss", f"halpha ({sub})", "pixel_corr_median", v, rv, goals["halpha_pixel_corr"],
                rv - v <= goals["halpha_pixel_corr"])  # fmt: skip
    if euclid is not None:
        mine = euclid[euclid["method"].str.startswith("unified")].iloc[0]
        others = euclid[euclid["method"].isin(["superres_regression", "superres_diffusion"])]
        best = float(others["re_log_scatter_dex"].min()) if len(others) else np.nan
        v = float(mine["re_log_scatter_dex"])
        add("translation", "decals", "euclid", "re_log_scatter_dex", v, best, 0.0, v <= best)
    return pd.DataFrame(rows)


def _optional(score, what: str, *args):
    """A comparison with a dedicated model, or None (said in the log) when no common held-out galaxy exists."""
    try:
        return score(*args)
    except ValueError as exc:
        if "held out here" not in str(exc):
            raise
        log.warning("unified: %s not scored: %s", what, exc)
        return None


def unified_evaluate_file(
    params: Mapping[str, Any],
    seed: int,
    image_paths: Mapping[str, Sequence[str]],
    model_path: str,
    targets_path: str,
    classes_path: str,
    classify_params: Mapping[str, Any],
    classify_metrics_path: str,
    outputs: Mapping[str, str],
    halpha: Mapping[str, Any] | None = None,
    superres: Mapping[str, Any] | None = None,
    truth_path: str | None = None,
    threads: int = 1,
) -> None:
    """Encode every galaxy in every survey set; retrieval, invariance, classification and translation tables.

    ``outputs``: ``latents, metrics, retrieval, translations, classification, failures``.
    ``halpha``: ``{"params", "metrics"}`` (the Hα stage's settings and metrics file) to score
    SDSS → Hα its way; ``superres``: ``{"params", "metrics", "re_compare"}`` likewise for
    DECaLS → Euclid. Either may be None (that comparison is skipped).
    """
    import torch

    from galmap.classify.targets import class_names, score_predictions
    from galmap.nn.training import load_model
    from galmap.unified import evaluate as ev
    from galmap.unified.model import UnifiedVAE
    from galmap.unified.references import euclid_re_scatter, halpha_scores

    torch.set_num_threads(max(1, threads))
    failures = FailureLog("unified")
    stack = _stack(image_paths, params, seed, failures)
    model, meta = load_model(model_path, UnifiedVAE)
    post = ev.posteriors(model, stack)
    write_table(outputs["latents"], ev.latents_table(stack, post))
    singles = list(model.encoders)
    retrieval = ev.retrieval_table(stack, post, singles, metric=str(params.get("retrieval_metric", "cosine")))
    write_table(outputs["retrieval"], retrieval)
    invariance = ev.invariance_table(stack, post, singles, seed, n_estimators=int(params["probe_trees"]))
    translation = ev.translation_table(model, stack, post)
    targets = read_table(targets_path)
    names = class_names(read_table(classes_path))
    preds, problems = ev.classification_predictions(
        targets, post, stack.ids, classify_params["rf"], seed, classify_params["decision"]
    )
    for gid, why in problems:
        failures.add(gid, why)
    cls, _ = score_predictions({f"unified_{k}": v for k, v in preds.items()}, targets, names)
    ref_metrics = read_table(classify_metrics_path)
    ref = ref_metrics[ref_metrics["model"] == "rf_latent"]
    cls = pd.concat([ref, cls], ignore_index=True)
    write_table(outputs["classification"], cls)
    reference_ba = float(ref["balanced_accuracy"].mean())
    truth = read_table(truth_path) if truth_path else None
    ha = ha_ref = eu = None
    if halpha is not None:
        ha = _optional(halpha_scores, "SDSS -> Hα",
            model, stack, post, image_paths[halpha["params"]["input_survey"]],
            image_paths[halpha["params"]["target_survey"]], halpha["params"], seed, truth,
            halpha["params"]["input_survey"], halpha["params"]["target_survey"],
        )  # fmt: skip
        ha_ref = read_table(halpha["metrics"]) if ha is not None else None
    if superres is not None:
        p = superres["params"]
        eu = _optional(euclid_re_scatter, "DECaLS -> Euclid",
            model, stack, post, read_table(superres["re_compare"]), read_table(superres["metrics"]),
            image_paths[p["target_survey"]], p, p["source_survey"], p["target_survey"],
        )  # fmt: skip
    metrics = _goal_rows(retrieval, invariance, cls[cls["model"] != "rf_latent"], reference_ba, translation, ha,
                         ha_ref, eu, params["goals"])  # fmt: skip
    write_table(outputs["metrics"], metrics)
    examples = _examples(model, stack, post, int(params["n_examples"]))
    _write_examples(outputs["translations"], examples, stack, list(post))
    failures.write(outputs["failures"])
    log.info("unified: retrieval\n%s", retrieval.to_string(index=False))
    log.info("unified: invariance\n%s", invariance.to_string(index=False))
    log.info("unified: goals\n%s", metrics[metrics["use"] != "translation"].to_string(index=False))
