"""The latent-space jobs: VAE training, encoding and scan; outliers; the flow and its closure test.

Files in, files out (the package's conventions: :mod:`galmap`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from galmap.core.failures import FailureLog
from galmap.core.io import read_shard, read_table, training_checkpoint, write_shard, write_table

log = logging.getLogger("galmap")


def train_vae_file(
    params: Mapping[str, Any],
    seed: int,
    latent_dim: int,
    image_paths: Sequence[str],
    model_path: str,
    history_path: str,
    threads: int = 1,
) -> None:
    """Train the VAE with ``latent_dim`` latents on the preprocessed shards; write the model and history.

    A checkpoint next to the model (``checkpoint.pt``) is written after every epoch
    and removed once the model is written: a killed job resumes from it.
    """
    import torch

    from galmap.latent.vae import train_vae
    from galmap.nn.training import save_model

    torch.set_num_threads(max(1, threads))
    with training_checkpoint(model_path) as checkpoint:
        model, history, meta = train_vae(image_paths, params, latent_dim, seed, checkpoint=checkpoint)
        meta["images_per_s"] = float(history["images_per_s"].median()) if len(history) else float("nan")
        save_model(model_path, model, meta)
        write_table(history_path, history)
    log.info("VAE z=%d: %d epochs; model written to %s", latent_dim, len(history), model_path)


def encode_file(
    params: Mapping[str, Any],
    seed: int,
    model_path: str,
    images_path: str,
    out_path: str,
    failures_path: str,
    threads: int = 1,
) -> None:
    """Latents and reconstruction metrics of every galaxy of one preprocessed shard."""
    import numpy as np
    import torch

    from galmap.core.device import pick_device
    from galmap.latent.outliers import latent_columns
    from galmap.latent.vae import ConvVAE, encode, loader
    from galmap.nn.training import load_model

    torch.set_num_threads(max(1, threads))
    model, meta = load_model(model_path, ConvVAE, pick_device(params.get("device", "auto")))
    data = loader(params, seed)(Path(images_path))
    if list(data.attrs["bands"]) != list(meta["bands"]):
        raise ValueError(f"{images_path} has bands {list(data.attrs['bands'])}, the model {model_path} {meta['bands']}")
    table = encode(model, data)
    failures = FailureLog("vae")
    mu = table[latent_columns(table)].to_numpy()
    for gid, n_pix, finite in zip(table["id"], table["n_pix"], np.isfinite(mu).all(axis=1), strict=True):
        if n_pix == 0:
            failures.add(gid, "no unmasked pixel with data: latents describe an empty stamp, metrics are NaN")
        elif not finite:
            failures.add(gid, "the encoder returned non-finite latents")
    write_table(out_path, table)
    failures.write(failures_path)
    log.info("encoded %d galaxies of %s with %s; %d failures", len(table), images_path, model_path, len(failures))


def latent_scan_file(
    latent_paths: Sequence[str],
    history_paths: Sequence[str],
    out_path: str,
    morph_paths: Sequence[str] = (),
    truth_path: str | None = None,
) -> None:
    """``ssim_vs_latents.csv`` from the latents tables and histories of every latent size.

    With ``morph_paths`` (the :func:`morph_metrics_file` tables, in the order of ``latent_paths``) the
    morphology-aware columns of :func:`galmap.latent.morphmetrics.morph_summary` are added; with the mock's
    truth table, the m = 2 ratio of the test spirals (``arm_frac > 0``).
    """
    from galmap.latent.morphmetrics import morph_summary
    from galmap.latent.vae import scan_summary

    tables, histories, morph = {}, {}, {}
    for i, (lp, hp) in enumerate(zip(latent_paths, history_paths, strict=True)):
        t = read_table(lp)
        k = sum(c.startswith("mu_") for c in t.columns)
        tables[k], histories[k] = t, read_table(hp)
        if morph_paths:
            morph[k] = read_table(morph_paths[i])
    summary = scan_summary(tables, histories)
    if morph:
        spirals = None
        if truth_path and "arm_frac" in (truth := read_table(truth_path)).columns:
            spirals = set(truth.loc[truth["arm_frac"] > 0, "id"].astype(str))
        extra = pd.DataFrame([{"latent_dim": k} | morph_summary(m, spirals) for k, m in morph.items()])
        summary = summary.merge(extra, on="latent_dim", how="left")
    write_table(out_path, summary)
    log.info("SSIM vs number of latents (test split):\n%s", summary.to_string(index=False))


def outliers_file(
    params: Mapping[str, Any],
    seed: int,
    latents_path: str,
    truth_path: str | None,
    out_path: str,
    metrics_path: str,
    roc_path: str,
) -> None:
    """Outlier scores and flags; with a truth table holding ``anomaly``, recall/FPR and the ROC curve."""
    from galmap.latent.outliers import evaluate
    from galmap.latent.outliers import score as score_outliers

    latents = read_table(latents_path)
    table = score_outliers(latents, float(params["threshold_sigma"]), seed, bool(params.get("per_band", True)))
    write_table(out_path, table)
    if truth_path and "anomaly" in (truth := read_table(truth_path)).columns:
        metrics, curve = evaluate(table, truth.set_index("id")["anomaly"])
    else:
        metrics = pd.DataFrame({"kind": ["all"], "n": [len(table)], "n_flagged": [int(table["is_outlier"].sum())]})
        curve = pd.DataFrame(columns=["threshold", "fpr", "tpr"])
    write_table(metrics_path, metrics)
    write_table(roc_path, curve)
    log.info(
        "outliers: %d of %d flagged\n%s", int(table["is_outlier"].sum()), len(table), metrics.to_string(index=False)
    )


def flow_train_file(
    params: Mapping[str, Any],
    seed: int,
    latents_path: str,
    sersic_path: str,
    morphometry_path: str,
    model_path: str,
    history_path: str,
    data_path: str,
    failures_path: str,
    threads: int = 1,
) -> None:
    """Fit the conditional flow p(latents | parameters); write it, its history and its data table.

    The data table (``id, split, <parameters>``) lists the galaxies with usable
    parameters and finite latents; the others are in the failures table with the reason.
    """
    import numpy as np
    import torch

    from galmap.classify.targets import latent_matrix
    from galmap.latent.flow import mean_log_prob, save_flow, train_flow
    from galmap.nn.inputs import assign_split
    from galmap.structure.parameters import parameter_table

    torch.set_num_threads(max(1, threads))
    names = list(params["parameters"])
    table, reasons = parameter_table(read_table(sersic_path), read_table(morphometry_path), names)
    ids, z = latent_matrix(read_table(latents_path))
    zrow = {g: i for i, g in enumerate(ids)}
    failures = FailureLog("flow")
    keep = []
    for i, gid in enumerate(table["id"]):
        j = zrow.get(gid)
        why = reasons[gid] or (
            "no latents" if j is None else ("non-finite latents" if not np.isfinite(z[j]).all() else "")
        )
        if why:
            failures.add(gid, f"not used by the flow: {why}")
        else:
            keep.append(i)
    data = table.iloc[keep].reset_index(drop=True)
    data.insert(
        1, "split", assign_split(list(data["id"]), seed, float(params["val_fraction"]), float(params["test_fraction"]))
    )
    zd = z[[zrow[g] for g in data["id"]]]
    pd_ = data[names].to_numpy(dtype=np.float64)
    with training_checkpoint(model_path) as checkpoint:
        model, history = train_flow(zd, pd_, data["split"].to_numpy(), names, params, seed, checkpoint)
        test = (data["split"] == "test").to_numpy()
        meta = {
            "model": model.config(),
            "seed": seed,
            "n_train": int((data["split"] == "train").sum()),
            "test_log_prob_per_dim": mean_log_prob(model, zd[test], pd_[test]) if test.any() else float("nan"),
        }
        save_flow(model_path, model, meta)
        write_table(history_path, history)
        write_table(data_path, data)
        failures.write(failures_path)
    log.info(
        "flow: %d galaxies (%d excluded), %d epochs, test log p = %.3f nats/dim",
        len(data), len(failures), len(history), meta["test_log_prob_per_dim"],
    )  # fmt: skip


def flow_closure_file(
    config: Mapping[str, Any],
    flow_path: str,
    vae_path: str,
    data_path: str,
    template_path: str,
    closure_path: str,
    summary_path: str,
    gallery_path: str,
    failures_path: str,
    threads: int = 1,
) -> None:
    """Generate galaxies for held-out parameters, measure them again, and draw the one-parameter gallery."""
    import numpy as np
    import torch

    from galmap.core.device import pick_device
    from galmap.core.io import Shard
    from galmap.latent.flow import load_flow
    from galmap.latent.flow_closure import (
        closure_summary,
        closure_table,
        gallery_values,
        generate_images,
        measure_parameters,
    )
    from galmap.latent.vae import ConvVAE
    from galmap.nn.training import load_model

    torch.set_num_threads(max(1, threads))
    p = config["flow"]
    seed = int(config["seed"])
    device = pick_device(p.get("device", "auto"))
    flow, _ = load_flow(flow_path, device)
    vae, vmeta = load_model(vae_path, ConvVAE, device)
    template = read_shard(template_path, datasets=())
    if list(template.bands) != list(vmeta["bands"]):
        raise ValueError(f"{template_path} has bands {template.bands}, the VAE {vae_path} {vmeta['bands']}")
    names = list(flow.parameters_)
    data = read_table(data_path)
    test = data[data["split"] == "test"]
    n = min(int(p["closure_n"]), len(test))
    if n == 0:
        raise ValueError(
            f"{data_path} has no galaxy in the flow's test split: raise flow.test_fraction or add galaxies"
        )
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC105E]))
    requested = test.iloc[np.sort(rng.choice(len(test), n, replace=False))].reset_index(drop=True)
    failures = FailureLog("flow")
    closures = []
    for latent in ("sampled", "central"):
        gen_ids = f"gen-{latent}-" + requested["id"].astype(str)
        images, ivar = generate_images(
            flow, vae, requested[names].to_numpy(dtype=np.float64), template, seed, latent == "sampled",
            bool(p["closure_noise"]),
        )  # fmt: skip
        measured, reasons = measure_parameters(
            images, ivar, gen_ids, template.attrs, names, config["preprocess"], config["structure"],
            failures, processes=threads,
        )  # fmt: skip
        for gid, why in reasons.items():
            if why:
                failures.add(gid, f"closure: generated galaxy not measured: {why}")
        measured = measured[reasons.reindex(measured["id"]).to_numpy() == ""].copy()
        measured["id"] = measured["id"].str.removeprefix(f"gen-{latent}-")
        closures.append(closure_table(requested, measured, names, latent))
    closure = pd.concat(closures, ignore_index=True)
    summary = closure_summary(closure)
    write_table(closure_path, closure)
    write_table(summary_path, summary)
    failures.write(failures_path)
    log.info("closure (requested vs measured on %d generated galaxies):\n%s", n, summary.to_string(index=False))

    vary = [v for v in p["gallery_parameters"] if v in names]
    train = data[data["split"] == "train"]
    grid = gallery_values(train, names, vary, int(p["gallery_steps"]))
    flat = grid.reshape(-1, len(names))
    gimages, givar = generate_images(flow, vae, flat, template, None, sample=False, add_noise=False)
    gids = np.array([f"{v}-{s}" for v in vary for s in range(grid.shape[1])], dtype=object)
    attrs = dict(template.attrs) | {"parameters": names, "vary": vary, "steps": int(grid.shape[1])}
    write_shard(gallery_path, Shard(gimages, givar, gids, attrs, {"requested": flat.astype(np.float64)}))


def _test_ids(paths: Sequence[str], seed: int, params: Mapping[str, Any]) -> list[str]:
    """Ids of the VAE's test split in the shards (the split of ``latents.parquet``)."""
    from galmap.nn.inputs import assign_split

    ids = [str(g) for p in paths for g in read_shard(p, datasets=()).ids]
    split = assign_split(ids, seed, float(params["val_fraction"]), float(params["test_fraction"]))
    return [g for g, s in zip(ids, split, strict=True) if s == "test"]


def noiseless_file(
    config: Mapping[str, Any], truth_path: str, image_paths: Sequence[str], out_path: str, failures_path: str
) -> None:
    """Noiseless stamps (the VAE's survey) of the VAE's test galaxies, drawn by the mock (mock data only)."""
    from galmap.core.io import write_shard
    from galmap.latent.morphmetrics import render_noiseless

    p = config["vae"]
    test = set(_test_ids(image_paths, int(config["seed"]), p))
    truth = read_table(truth_path)
    failures = FailureLog("vae")
    shard = render_noiseless(truth[truth["id"].astype(str).isin(test)], config, p["survey"], failures)
    write_shard(out_path, shard)
    failures.write(failures_path)
    log.info("noiseless %s stamps of %d test galaxies; %d failures", p["survey"], len(shard), len(failures))


def morph_metrics_file(
    params: Mapping[str, Any],
    seed: int,
    model_path: str,
    image_paths: Sequence[str],
    noiseless_path: str | None,
    out_path: str,
    threads: int = 1,
) -> None:
    """Morphology-aware reconstruction metrics of the VAE's test galaxies (:mod:`galmap.latent.morphmetrics`)."""
    import numpy as np
    import torch

    from galmap.core.device import pick_device
    from galmap.latent.morphmetrics import reconstruction_table
    from galmap.latent.vae import ConvVAE, loader
    from galmap.nn.inputs import denormalise
    from galmap.nn.training import load_model

    torch.set_num_threads(max(1, threads))
    model, meta = load_model(model_path, ConvVAE, pick_device(params.get("device", "auto")))
    device = next(model.parameters()).device
    probe = params["probes"]
    clean = None
    if noiseless_path:
        ns = read_shard(noiseless_path)
        clean = {str(g): ns.images[i] for i, g in enumerate(ns.ids)}
    parts = []
    for path in image_paths:
        shard = read_shard(path, datasets=("segmap",))
        data = loader(params, seed)(Path(path))
        if list(data.attrs["bands"]) != list(meta["bands"]):
            raise ValueError(f"{path} has bands {list(data.attrs['bands'])}, the model {model_path} {meta['bands']}")
        band = list(meta["bands"]).index(probe["fourier_band"]) if probe["fourier_band"] in meta["bands"] else 0
        test = np.flatnonzero(data.split == "test")
        if not len(test):
            continue
        with torch.no_grad():
            x = data.x[test].to(device)
            recon = denormalise(model.decode(model.encode(x)[0]), data.attrs["norm_softening"]).cpu().numpy()
        parts.append(
            reconstruction_table(
                [str(g) for g in data.ids[test]],
                shard.images[test],
                recon,
                shard.extra["segmap"][test],
                data.w[test].numpy() > 0,
                clean,
                band,
                float(probe["fourier_min_amplitude"]),
            )  # fmt: skip
        )
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({"id": []})
    write_table(out_path, table)
    log.info(
        "morphology metrics of %d test galaxies (%s): median SSIM on the segment %.3f, against the noiseless %.3f, "
        "median A2 ratio %.2f", len(table), model_path, table["ssim_seg"].median(), table["ssim_clean"].median(),
        table["A2_ratio"].median(),
    )  # fmt: skip


def probe_ceiling_file(
    config: Mapping[str, Any],
    truth_path: str,
    image_paths: Sequence[str],
    model_path: str,
    history_path: str,
    features_path: str,
    scores_path: str,
    threads: int = 1,
) -> None:
    """The ceiling CNN of the probes: trained on the images to the probed quantities; its features' probe scores.

    Trained with the classification CNN's settings (``classify.cnn``) on the VAE's train split, early-stopped
    on its val split (:mod:`galmap.latent.probes`).
    """
    import torch

    from galmap.classify.cnn import train_cnn
    from galmap.latent.probes import ceiling_targets, cnn_features, probe_scores, quantities
    from galmap.nn.inputs import assign_split
    from galmap.nn.training import save_model

    torch.set_num_threads(max(1, threads))
    p, seed = config["vae"], int(config["seed"])
    specs = quantities(p["probes"]["quantities"])
    truth = read_table(truth_path)
    truth["id"] = truth["id"].astype(str)
    split = pd.Series(
        assign_split(list(truth["id"]), seed, float(p["val_fraction"]), float(p["test_fraction"])), index=truth["id"]
    )
    targets, n_classes = ceiling_targets(truth, split, specs, int(p["probes"]["cnn_classes"]))
    names = [q.name for q in specs]
    with training_checkpoint(model_path) as checkpoint:
        model, history, meta = train_cnn(image_paths, targets, names, n_classes, config["classify"]["cnn"], seed,
                                         checkpoint)  # fmt: skip
        save_model(model_path, model, meta)
        write_table(history_path, history)
    feats = cnn_features(model, image_paths)
    feats.insert(1, "split", feats["id"].map(split).fillna("none").to_numpy())
    write_table(features_path, feats)
    cols = [c for c in feats.columns if c.startswith("f_")]
    scores = probe_scores(feats, cols, truth, specs, p["probes"], seed, threads)
    write_table(scores_path, scores)
    log.info("probe ceiling (CNN features, %d epochs):\n%s", len(history), scores.to_string(index=False))


def probes_file(
    params: Mapping[str, Any],
    seed: int,
    latent_paths: Sequence[str],
    truth_path: str,
    ceiling_path: str,
    out_path: str,
    threads: int = 1,
) -> None:
    """``probes.csv``: per latent size and quantity, the forest on the latent means beside the image ceiling."""
    from galmap.latent.outliers import latent_columns
    from galmap.latent.probes import PROBE_COLUMNS, probe_scores, quantities

    specs = quantities(params["probes"]["quantities"])
    truth = read_table(truth_path)
    truth["id"] = truth["id"].astype(str)
    ceiling = read_table(ceiling_path).set_index("quantity")
    parts = []
    for lp in latent_paths:
        lat = read_table(lp)
        cols = latent_columns(lat)
        lat["id"] = lat["id"].astype(str)
        scores = probe_scores(lat, cols, truth, specs, params["probes"], seed, threads)
        scores["latent_dim"] = len(cols)
        scores["image_r2"] = scores["quantity"].map(ceiling["score"])
        parts.append(scores.rename(columns={"score": "latent_r2"}))
    table = pd.concat(parts, ignore_index=True)[PROBE_COLUMNS]
    write_table(out_path, table)
    log.info("probes (test split):\n%s", table.to_string(index=False))
