"""The workflow's stages (data, preprocessing, structure) as functions of files: what the workflow's scripts call.

Each function reads its inputs, computes with the library, and writes its outputs
atomically, so the Snakemake scripts stay one call long. Every job imports this
module, so the library modules a stage needs are imported inside its function:
a job pays only for its own imports (photutils, GalSim, torch take seconds each).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from galmap.failures import FailureLog, gather_failures
from galmap.io import read_shard, read_table, training_checkpoint, write_shard, write_table

log = logging.getLogger("galmap")


def shard_rows(n_total: int, shard_size: int, shard: int) -> slice:
    """Rows of the catalog that belong to shard number ``shard``."""
    start = shard * shard_size
    if start >= n_total:
        raise ValueError(f"shard {shard} is empty: the catalog has {n_total} rows of {shard_size} per shard")
    return slice(start, min(start + shard_size, n_total))


def make_mock_catalog(config: Mapping[str, Any], truth_path: str, catalog_path: str) -> None:
    """Draw the mock population; write the truth table and the id/ra/dec/shard catalog."""
    from galmap.mock.population import draw_population, true_answers

    truth = draw_population(config)
    truth = pd.concat([truth, true_answers(truth)], axis=1)
    catalog = truth[["id", "ra", "dec"]].copy()
    catalog["shard"] = truth["index"] // int(config["shard_size"])
    write_table(truth_path, truth)
    write_table(catalog_path, catalog)
    log.info("mock population: %d galaxies", len(truth))


def make_mock_labels(
    seed: int,
    volunteers: Mapping[str, Any],
    surveys: Mapping[str, Any],
    truth_path: str,
    labels_path: str,
    counts_path: str,
) -> None:
    """The mock volunteers' labels of the truth table (:func:`galmap.mock.volunteers.make_labels`), class counts.

    ``surveys`` holds the configuration of the survey the volunteers look at
    (``volunteers["label_survey"]``; the config validation guarantees it exists).
    """
    from galmap.labels import class_counts
    from galmap.mock.volunteers import make_labels
    from galmap.surveys import Survey

    name = volunteers["label_survey"]
    survey = Survey.from_config(name, surveys[name])
    labels = make_labels(read_table(truth_path), survey, seed, volunteers["votes_mean"])
    counts = class_counts(labels)
    write_table(labels_path, labels)
    write_table(counts_path, counts)
    log.info("mock volunteers: %d galaxies; class counts:\n%s", len(labels), counts.to_string(index=False))


def render_mock_shard(
    config: Mapping[str, Any], truth_path: str, shard: int, outputs: Mapping[str, str], failures_path: str
) -> None:
    """Render shard number ``shard`` of the truth table in every survey of ``outputs`` (name -> path)."""
    from galmap.mock.render import render_shard
    from galmap.surveys import surveys_from_config

    truth = read_table(truth_path)
    rows = truth.iloc[shard_rows(len(truth), int(config["shard_size"]), shard)]
    surveys = surveys_from_config(config)
    failures = FailureLog("data")
    artefacts = config["mock"]["anomalies"]["artefact_survey"]
    shards = render_shard(rows, [surveys[name] for name in outputs], int(config["seed"]), failures, True, artefacts)
    for name, path in outputs.items():
        write_shard(path, shards[name])
    failures.write(failures_path)
    log.info("rendered %d galaxies in %s; %d failures", len(rows), ", ".join(outputs), len(failures))


# --------------------------------------------------------------------------- real data
def _write_problems(stage: str, problems: Sequence[tuple[str, str]], path: str) -> None:
    failures = FailureLog(stage)
    for gid, reason in problems:
        failures.add(gid, reason)
    failures.write(path)


def local_catalog_file(config: Mapping[str, Any], catalog_path: str, labels_path: str, failures_path: str) -> None:
    """The local folder's catalog (``id, file, ra, dec, shard``), labels and unmatched files/rows."""
    from galmap.sources import local_catalog

    catalog, labels, problems = local_catalog(config)
    write_table(catalog_path, catalog)
    write_table(labels_path, labels)
    _write_problems("data", [(g, f"local: {r}") for g, r in problems], failures_path)
    log.info("local folder %s: %d galaxies; %d problems", config["data"]["local"]["path"], len(catalog), len(problems))


def legacysurvey_catalog_file(
    config: Mapping[str, Any], folder: str, catalog_path: str, labels_path: str, counts_path: str, failures_path: str
) -> None:
    """Fetch the Galaxy Zoo DECaLS catalog (Zenodo, MD5-checked); write the selection's catalog and labels."""
    from galmap.labels import class_counts
    from galmap.services import ZENODO, download_settings, fetch_zenodo_file, gz_catalog_labels, select_galaxies

    cfg = config["data"]["legacysurvey"]
    failures = FailureLog("data")
    path = fetch_zenodo_file(cfg["catalog"], folder, download_settings(cfg, ZENODO, int(config["seed"])), failures)
    labels, problems = gz_catalog_labels(pd.read_csv(path, low_memory=False))
    chosen, missing = select_galaxies(labels, cfg["selection"], int(config["seed"]))
    catalog = chosen[["id", "iauname", "ra", "dec"]].copy()
    catalog["shard"] = catalog.index // int(config["shard_size"])
    write_table(catalog_path, catalog)
    write_table(labels_path, chosen)
    write_table(counts_path, class_counts(chosen))
    chosen_ids = set(chosen["id"])
    for gid, reason in [*problems, *missing]:
        if gid in chosen_ids or not chosen_ids or cfg["selection"].get("ids"):
            failures.add(gid, f"catalog: {reason}")
    failures.write(failures_path)
    log.info("Galaxy Zoo DECaLS: %d galaxies in the catalog, %d selected", len(labels), len(chosen))


def legacysurvey_download_file(
    config: Mapping[str, Any], survey: str, catalog_path: str, shard: int, folder: str, manifest_path: str
) -> None:
    """Fetch one shard's cutouts of ``survey`` from the Legacy Survey cutout service; write the download table."""
    from galmap.cutouts import verify_cutout
    from galmap.download import download
    from galmap.services import (
        EUCLID,
        EUCLID_LAYER,
        EUCLID_SIA,
        LEGACY_SURVEY,
        cutout_items,
        download_settings,
        fetch_euclid_cutouts,
    )
    from galmap.sources import shard_members

    cfg = config["data"]["legacysurvey"]
    sv = config["surveys"][survey]
    rows = shard_members(read_table(catalog_path), shard)
    layer = cfg["layers"][survey]
    if layer == EUCLID_LAYER:
        settings = download_settings(cfg, f"{EUCLID} ({survey})", int(config["seed"]))
        table = fetch_euclid_cutouts(rows, sv, folder, settings, cfg.get("euclid_sia", EUCLID_SIA))
    else:
        items = cutout_items(rows, sv, layer, cfg["cutout_url"], folder, bool(cfg["invvar"]))
        shape = (int(sv["stamp_px"]), int(sv["stamp_px"]))
        settings = download_settings(cfg, f"{LEGACY_SURVEY} ({survey}, {layer})", int(config["seed"]))
        table = download(items, lambda p: verify_cutout(p, sv["bands"], shape), settings)
    write_table(manifest_path, table)


def manga_download_file(
    config: Mapping[str, Any], shard: int, folder: str, maps_manifest: str, preimaging_manifest: str
) -> None:
    """Fetch one shard of the MaNGA sample (DAP MAPS, then u,g,r,i,z preimaging); write both download tables."""
    from galmap.manga import manga_sample
    from galmap.services import MANGA, MANGA_PREIMAGING, download_settings, fetch_manga_shard
    from galmap.sources import manga_surveys, shard_members

    cfg = config["data"]["manga"]
    rows = shard_members(manga_sample(config), shard)
    net = config["data"]["legacysurvey"]
    seed = int(config["seed"])
    bands = list(config["surveys"][manga_surveys(config)["ugriz"]]["bands"])
    maps, pre = fetch_manga_shard(
        list(rows["plateifu"]), bands, folder, cfg, download_settings(net, f"{MANGA} (DAP MAPS)", seed),
        download_settings(net, MANGA_PREIMAGING, seed),
    )  # fmt: skip
    write_table(maps_manifest, maps)
    write_table(preimaging_manifest, pre)
    log.info("MaNGA shard %04d: %d MAPS, %d preimaging files", shard, int(maps["status"].ne("failed").sum()),
             int(pre["status"].ne("failed").sum()))  # fmt: skip


def ingest_file(
    config: Mapping[str, Any], survey: str, table_path: str, shard: int, out_path: str, failures_path: str
) -> None:
    """One raw shard of ``survey`` from FITS cutouts: a local catalog (``id, file, shard``) or a download table."""
    from galmap.ingest import ingest_colour_images, ingest_cutouts
    from galmap.manga import ingest_manga
    from galmap.sources import local_format, manga_surveys, shard_members

    table = read_table(table_path)
    failures = FailureLog("data")
    manga_kind = {name: kind for kind, name in manga_surveys(config).items()}.get(survey)
    retry_rule = "manga_download" if manga_kind else "legacysurvey_download"
    if "status" in table:  # a download table: the rows of this shard, with why a cutout is missing
        rows = table.assign(file=table["path"].where(table["status"].isin(["fetched", "present"]), ""))
        for gid, url, reason in rows.loc[rows["file"] == "", ["id", "url", "reason"]].itertuples(index=False):
            failures.add(
                gid,
                f"{survey}: download: {url if isinstance(url, str) and url else 'no URL'}: {reason}; "
                f"to retry: snakemake --forcerun {retry_rule} (files already fetched are kept)",
            )
    else:
        rows = shard_members(table, shard)
    sv = config["surveys"][survey]
    bands = list(sv["bands"])
    fwhm = [float(sv["psf_fwhm_arcsec"][b]) for b in bands]
    got = rows["file"].fillna("").astype(str).ne("")
    if manga_kind:
        out = ingest_manga(rows.assign(file=rows["file"].fillna("").astype(str)), manga_kind, survey, bands,
                           int(sv["stamp_px"]), float(sv["pixscale_arcsec"]), fwhm, failures)  # fmt: skip
        write_shard(out_path, out)
        failures.write(failures_path)
        log.info("ingested %d MaNGA files of %s into %s; %d failures", int(got.sum()), survey, out_path, len(failures))
        return
    # a row without a file keeps its place, with no data (ivar 0); its failure is recorded above
    colour = config["data"]["source"] == "local" and local_format(config) == "colour"
    out = (ingest_colour_images if colour else ingest_cutouts)(
        rows.assign(file=rows["file"].fillna("").astype(str)), survey, bands, int(sv["stamp_px"]),
        float(sv["pixscale_arcsec"]), fwhm, failures,
    )  # fmt: skip
    write_shard(out_path, out)
    failures.write(failures_path)
    log.info("ingested %d cutouts of %s into %s; %d failures", int(got.sum()), survey, out_path, len(failures))


def preprocess_file(params: Mapping[str, Any], raw_path: str, out_path: str, failures_path: str) -> None:
    """Preprocess one raw shard file into ``out_path``; failures to ``failures_path``."""
    from galmap.preprocess import preprocess_shard

    failures = FailureLog("preprocess")
    shard = read_shard(raw_path)
    out = preprocess_shard(shard, params, failures)
    write_shard(out_path, out)
    failures.write(failures_path)
    log.info("preprocessed %d galaxies of %s; %d failures", len(shard), raw_path, len(failures))


def structure_file(
    kind: str, params: Mapping[str, Any], images_path: str, out_path: str, failures_path: str, threads: int = 1
) -> None:
    """Sérsic fits (``kind="sersic"``) or morphometry (``"morphometry"``) of one preprocessed shard."""
    from galmap.structure import fit_sersic_shard, morphometry_shard

    shard = read_shard(images_path)
    failures = FailureLog("structure")
    if kind == "sersic":
        import torch

        torch.set_num_threads(max(1, threads))
        table = fit_sersic_shard(shard, params, failures)
    elif kind == "morphometry":
        table = morphometry_shard(shard, params["morph_band"], failures, processes=threads)
    else:
        raise ValueError(f"unknown structure measurement {kind!r}")
    write_table(out_path, table)
    failures.write(failures_path)
    log.info("%s of %d galaxies in %s; %d failures", kind, len(shard), images_path, len(failures))


def gather_tables(paths: Sequence[str | Path], out_path: str) -> None:
    """Concatenate per-shard tables (Parquet) into one."""
    frames = [read_table(p) for p in paths]
    write_table(out_path, pd.concat(frames, ignore_index=True))


def gather_failure_tables(paths: Sequence[str | Path], out_path: str) -> None:
    """Concatenate per-shard ``failures`` tables into one stage table."""
    write_table(out_path, gather_failures(paths))


# --------------------------------------------------------------------------- latent space
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

    from galmap.vae import save_vae, train_vae

    torch.set_num_threads(max(1, threads))
    with training_checkpoint(model_path) as checkpoint:
        model, history, meta = train_vae(image_paths, params, latent_dim, seed, checkpoint=checkpoint)
        meta["images_per_s"] = float(history["images_per_s"].median()) if len(history) else float("nan")
        save_vae(model_path, model, meta)
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

    from galmap.device import pick_device
    from galmap.outliers import latent_columns
    from galmap.vae import encode, load_vae, loader

    torch.set_num_threads(max(1, threads))
    model, meta = load_vae(model_path, pick_device(params.get("device", "auto")))
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


def latent_scan_file(latent_paths: Sequence[str], history_paths: Sequence[str], out_path: str) -> None:
    """``ssim_vs_latents.csv`` from the latents tables and histories of every latent size."""
    from galmap.vae import scan_summary

    tables, histories = {}, {}
    for lp, hp in zip(latent_paths, history_paths, strict=True):
        t = read_table(lp)
        k = sum(c.startswith("mu_") for c in t.columns)
        tables[k], histories[k] = t, read_table(hp)
    summary = scan_summary(tables, histories)
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
    from galmap.outliers import evaluate
    from galmap.outliers import score as score_outliers

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


# --------------------------------------------------------------------------- classification
def classify_targets_file(
    params: Mapping[str, Any], seed: int, labels_path: str, targets_path: str, classes_path: str
) -> None:
    """The questions' classes and stratified train/val/test splits (``targets.parquet``, ``classes.csv``)."""
    from galmap.classify import make_targets, spec_table, target_specs

    labels = read_table(labels_path)
    targets, specs = make_targets(labels, target_specs(params["questions"]), params, seed)
    write_table(targets_path, targets)
    write_table(classes_path, spec_table(specs))


def classify_rf_file(
    params: Mapping[str, Any],
    seed: int,
    targets_path: str,
    latents_path: str,
    out_path: str,
    failures_path: str,
    threads: int = 1,
) -> None:
    """Random forests on the latents, one per question; predictions of every used galaxy."""
    from galmap.classify import random_forest_predictions

    targets = read_table(targets_path)
    preds, problems = random_forest_predictions(targets, read_table(latents_path), params["rf"], seed, threads)
    failures = FailureLog("classify")
    for gid, why in problems:
        failures.add(gid, why)
    write_table(out_path, preds)
    failures.write(failures_path)
    log.info("random forests: %d predictions, %d failures", len(preds), len(failures))


def classify_cnn_file(
    params: Mapping[str, Any],
    seed: int,
    targets_path: str,
    classes_path: str,
    image_paths: Sequence[str],
    model_path: str,
    history_path: str,
    out_path: str,
    failures_path: str,
    threads: int = 1,
) -> None:
    """Train the multi-head CNN on the images; predictions of every used galaxy."""
    import torch

    from galmap.classify import class_names
    from galmap.cnn import predict, save_cnn, train_cnn

    torch.set_num_threads(max(1, threads))
    targets = read_table(targets_path)
    names = class_names(read_table(classes_path))
    questions = list(names)
    with training_checkpoint(model_path) as checkpoint:
        model, history, meta = train_cnn(
            image_paths, targets, questions, [len(names[q]) for q in questions], params["cnn"], seed, checkpoint
        )
        save_cnn(model_path, model, meta)
        write_table(history_path, history)
    preds = predict(model, image_paths, targets, questions)
    failures = FailureLog("classify")
    seen = set(zip(preds["id"], preds["question"], strict=True))
    for gid, q in zip(targets["id"], targets["question"], strict=True):
        if (gid, q) not in seen:
            failures.add(gid, f"classify ({q}): no image of this galaxy in the {meta['survey']} shards")
    write_table(out_path, preds)
    failures.write(failures_path)
    log.info("CNN: %d epochs, %d predictions, %d failures", len(history), len(preds), len(failures))


def classify_metrics_file(
    targets_path: str,
    classes_path: str,
    prediction_paths: Mapping[str, str],
    metrics_path: str,
    confusion_path: str,
) -> None:
    """``metrics.csv`` and ``confusion.csv`` on the test split, for every model."""
    from galmap.classify import class_names, score_predictions

    targets = read_table(targets_path)
    preds = {model: read_table(p) for model, p in prediction_paths.items()}
    metrics, confusion = score_predictions(preds, targets, class_names(read_table(classes_path)))
    write_table(metrics_path, metrics)
    write_table(confusion_path, confusion)
    cols = ["question", "model", "n_test", "accuracy", "chance_accuracy", "f1_macro"]
    log.info("classification on the test split:\n%s", metrics[cols].to_string(index=False))


# --------------------------------------------------------------------------- parameters -> images
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

    from galmap.classify import latent_matrix
    from galmap.flow import mean_log_prob, save_flow, train_flow
    from galmap.netdata import assign_split
    from galmap.parameters import parameter_table

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

    from galmap.closure import closure_summary, closure_table, gallery_values, generate_images, measure_parameters
    from galmap.device import pick_device
    from galmap.flow import load_flow
    from galmap.io import Shard
    from galmap.vae import load_vae

    torch.set_num_threads(max(1, threads))
    p = config["flow"]
    seed = int(config["seed"])
    device = pick_device(p.get("device", "auto"))
    flow, _ = load_flow(flow_path, device)
    vae, vmeta = load_vae(vae_path, device)
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


# --------------------------------------------------------------------------- survey A -> survey B
def domain_target_file(
    band_surveys: Mapping[str, str],
    source_path: str,
    component_paths: Mapping[str, str],
    out_path: str,
    failures_path: str,
) -> None:
    """The target survey's images of one shard on the source grid and scale (galmap.domain.target_shard)."""
    from galmap.domain import target_shard

    source = read_shard(source_path, datasets=())
    components = {name: read_shard(path, datasets=("flags",)) for name, path in component_paths.items()}
    failures = FailureLog("domain")
    shard = target_shard(source, components, band_surveys, failures)
    write_shard(out_path, shard)
    failures.write(failures_path)
    log.info("domain: %d target stamps (%s), %d failures", len(shard), "; ".join(shard.attrs["resampled_from"]),
             len(failures))  # fmt: skip


def domain_dann_file(
    params: Mapping[str, Any],
    seed: int,
    targets_path: str,
    classes_path: str,
    classifier_path: str,
    source_paths: Sequence[str],
    target_paths: Sequence[str],
    model_path: str,
    history_path: str,
    threads: int = 1,
) -> None:
    """Fine-tune the source CNN domain-adversarially on source labels and unlabelled target images."""
    import torch

    from galmap.classify import class_names
    from galmap.cnn import load_cnn, save_cnn
    from galmap.device import pick_device
    from galmap.domain import train_dann

    torch.set_num_threads(max(1, threads))
    targets = read_table(targets_path)
    questions = list(class_names(read_table(classes_path)))
    classifier, meta = load_cnn(classifier_path, pick_device(params.get("device", "auto")))
    if list(meta["questions"]) != questions:
        raise ValueError(f"{classifier_path} answers {meta['questions']}, {classes_path} lists {questions}")
    with training_checkpoint(model_path) as checkpoint:
        model, history = train_dann(
            classifier, source_paths, target_paths, targets, questions, params, seed, checkpoint
        )
        save_cnn(model_path, model, meta | {"adapted": "dann", "seed": seed})
        write_table(history_path, history)
    last = history.iloc[-1]
    log.info(
        "DANN: %d epochs; last epoch: source class loss %.4g, domain loss %.4g, domain accuracy %.3f",
        len(history), last["train_class_loss"], last["train_domain_loss"], last["train_domain_accuracy"],
    )  # fmt: skip


def domain_distill_file(
    params: Mapping[str, Any],
    seed: int,
    targets_path: str,
    classifier_path: str,
    source_paths: Sequence[str],
    target_paths: Sequence[str],
    model_path: str,
    history_path: str,
    threads: int = 1,
) -> None:
    """Distil the source CNN into an ensemble reading the target survey, on the galaxies outside the test split.

    Only the ``split`` column of the targets table is used (to leave out the
    test galaxies); no label reaches the training.
    """
    import torch

    from galmap.cnn import load_cnn
    from galmap.device import pick_device
    from galmap.domain import held_out_galaxies, train_distill
    from galmap.training import save_model

    torch.set_num_threads(max(1, threads))
    exclude = held_out_galaxies(read_table(targets_path)[["id", "split"]])
    classifier, meta = load_cnn(classifier_path, pick_device(params.get("device", "auto")))
    with training_checkpoint(model_path) as checkpoint:
        model, history = train_distill(classifier, source_paths, target_paths, exclude, params, seed, checkpoint)
        save_model(model_path, model, meta | {"model": model.config(), "adapted": "distill", "seed": seed})
        write_table(history_path, history)
    last = history.iloc[-1]
    log.info(
        "distillation: %d students, %d epochs; last epoch: KL %.4g, feature MSE %.4g (monitor pairs: %.4g, %.4g)",
        model.config()["members"], len(history), last["train_kl"], last["train_feature_mse"],
        last.get("val_kl", float("nan")), last.get("val_feature_mse", float("nan")),
    )  # fmt: skip


def domain_predict_file(
    batch_size: int,
    targets_path: str,
    classes_path: str,
    classifier_path: str,
    dann_path: str,
    distill_path: str,
    reference_path: str | None,
    source_paths: Sequence[str],
    target_paths: Sequence[str],
    out_path: str,
    failures_path: str,
    threads: int = 1,
) -> None:
    """Predictions of every method (source-only, AdaBN, DANN, distillation) on the source and target images.

    ``classifier_path`` is the source CNN, ``dann_path`` its DANN fine-tuning,
    ``distill_path`` the ensemble distilled from it on the overlap and
    ``reference_path`` (optional) the target-supervised reference; AdaBN is the
    source CNN with its batch-norm statistics re-estimated on the unlabelled
    target images outside the test split.
    """
    import torch

    from galmap.classify import class_names
    from galmap.cnn import load_cnn, predict
    from galmap.domain import METHODS, REFERENCE, CNNEnsemble, adapt_batchnorm, held_out_galaxies, target_batches
    from galmap.training import load_model

    torch.set_num_threads(max(1, threads))
    targets = read_table(targets_path)
    questions = list(class_names(read_table(classes_path)))
    base, _ = load_cnn(classifier_path)
    models = {
        "source_only": base,
        "adabn": adapt_batchnorm(base, target_batches(target_paths, held_out_galaxies(targets), batch_size)),
        "dann": load_cnn(dann_path)[0],
        "distill": load_model(distill_path, CNNEnsemble)[0],
    }
    if reference_path:
        models[REFERENCE] = load_cnn(reference_path)[0]
    parts = []
    for method in [*METHODS, REFERENCE]:
        if method not in models:
            continue
        for domain, paths in (("source", source_paths), ("target", target_paths)):
            p = predict(models[method], paths, targets, questions, batch_size)
            parts.append(p.assign(method=method, domain=domain))
    preds = pd.concat(parts, ignore_index=True)
    failures = FailureLog("domain")
    for domain in ("source", "target"):
        seen = set(preds.loc[preds["domain"] == domain, "id"])
        for gid in sorted(set(targets["id"]) - seen):
            failures.add(gid, f"domain: no {domain} image of this galaxy")
    write_table(out_path, preds)
    failures.write(failures_path)


def domain_metrics_file(targets_path: str, classes_path: str, predictions_path: str, metrics_path: str) -> None:
    """``domain/metrics.csv`` (:func:`galmap.domain.domain_metrics`) from the predictions of every method."""
    from galmap.classify import class_names
    from galmap.domain import domain_metrics

    preds = read_table(predictions_path)
    groups = {(m, d): g.drop(columns=["method", "domain"]) for (m, d), g in preds.groupby(["method", "domain"])}
    metrics = domain_metrics(groups, read_table(targets_path), class_names(read_table(classes_path)))
    write_table(metrics_path, metrics)
    cols = ["question", "method", "domain", "n_test", "accuracy", "change", "change_se", "recovered"]
    log.info("domain adaptation on the test split:\n%s", metrics[cols].round(3).to_string(index=False))


def superres_train_file(
    kind: str,
    params: Mapping[str, Any],
    seed: int,
    source_paths: Sequence[str],
    target_paths: Sequence[str],
    model_path: str,
    history_path: str,
    sersic_path: str | None = None,
    threads: int = 1,
) -> None:
    """Train the super-resolution diffusion model or its regression baseline (``kind``) on paired shards.

    ``sersic_path``: the source survey's Sérsic fits (the structure stage's table), read
    when ``superres.sersic_base`` asks for the Sérsic base.
    """
    import torch

    from galmap.device import pick_device
    from galmap.superres import load_pairs, train_model
    from galmap.training import derived_seed, save_model

    torch.set_num_threads(max(1, threads))
    stream = {"diffusion": 1, "regression": 2}[kind]
    sersic = read_table(sersic_path) if sersic_path else None
    data = load_pairs(source_paths, target_paths, params, seed, sersic=sersic)
    device = pick_device(params["device"])
    with training_checkpoint(model_path) as checkpoint:
        model, history, meta = train_model(kind, data, params, derived_seed(seed, 70, stream), device, checkpoint)
        save_model(model_path, model, meta | {"target_softening": data.target_softening})
        write_table(history_path, history)
    log.info(
        "superres %s: %d training galaxies, %.1f images/s, final loss %.4g",
        kind, meta["n_train"], meta["train_images_per_s"], history["train_loss"].iloc[-1],
    )  # fmt: skip


def superres_evaluate_file(
    params: Mapping[str, Any],
    seed: int,
    source_paths: Sequence[str],
    target_paths: Sequence[str],
    diffusion_path: str,
    regression_path: str,
    metrics_path: str,
    re_path: str,
    examples_path: str,
    failures_path: str,
    sersic_path: str | None = None,
    threads: int = 1,
) -> None:
    """Evaluate the diffusion model and its baselines on the held-out galaxies (metrics, Re table, examples)."""
    import h5py
    import numpy as np
    import torch

    from galmap.device import pick_device
    from galmap.io import atomic_path
    from galmap.superres import evaluate, load_pairs
    from galmap.training import derived_seed, load_model
    from galmap.unet import UNet

    torch.set_num_threads(max(1, threads))
    device = pick_device(params["device"])
    diffusion, dmeta = load_model(diffusion_path, UNet, device)
    regression, rmeta = load_model(regression_path, UNet, device)
    failures = FailureLog("superres")
    keys = ("data_scale", "residual_scale", "base_band_weights")
    if any(not np.allclose(dmeta.get(k) or 0.0, rmeta.get(k) or 0.0, rtol=1e-6) for k in keys):
        raise ValueError("superres: the diffusion and regression models were trained on different data scales")
    sersic = read_table(sersic_path) if sersic_path else None
    scales = {k: dmeta.get(k) for k in keys}
    data = load_pairs(source_paths, target_paths, params, seed, failures, sersic, scales)
    rates = {"diffusion": dmeta["train_images_per_s"], "regression": rmeta["train_images_per_s"]}
    metrics, table, examples = evaluate(data, diffusion, regression, params, derived_seed(seed, 70, 3), failures, rates)
    write_table(metrics_path, metrics)
    write_table(re_path, table)
    with atomic_path(examples_path, ".h5") as tmp, h5py.File(tmp, "w") as fh:
        for name, value in examples.items():
            arr = np.asarray(value)
            fh.create_dataset(name, data=arr.astype(h5py.string_dtype()) if arr.dtype.kind in "OU" else arr)
        fh.attrs["target_pixscale_arcsec"] = data.target_pixscale
        fh.attrs["source_pixscale_arcsec"] = data.source_pixscale
    failures.write(failures_path)
    log.info("superres metrics:\n%s", metrics.to_string(index=False))


def halpha_train_file(
    params: Mapping[str, Any],
    seed: int,
    input_paths: Sequence[str],
    target_paths: Sequence[str],
    model_path: str,
    history_path: str,
    threads: int = 1,
    kind: str = "mean",
) -> None:
    """Train the u,g,r,i,z -> Hα U-Net (``kind="mean"``) or the diffusion model (``"diffusion"``) on paired shards."""
    import torch

    from galmap.device import pick_device
    from galmap.halpha import load_pairs, train_diffusion, train_model
    from galmap.training import derived_seed, save_model

    trainers = {"mean": (train_model, 80), "diffusion": (train_diffusion, 81)}
    if kind not in trainers:
        raise ValueError(f"unknown Hα model {kind!r} ({', '.join(trainers)})")
    trainer, stream = trainers[kind]
    torch.set_num_threads(max(1, threads))
    data = load_pairs(input_paths, target_paths, params, seed)
    with training_checkpoint(model_path) as checkpoint:
        model, history, meta = trainer(
            data, params, derived_seed(seed, stream), pick_device(params["device"]), checkpoint
        )
        save_model(model_path, model, meta | {"softening": data.softening})
        write_table(history_path, history)
    log.info("halpha %s: %d training galaxies, %.1f images/s", kind, meta["n_train"], meta["train_images_per_s"])


def halpha_evaluate_file(
    params: Mapping[str, Any],
    seed: int,
    input_paths: Sequence[str],
    target_paths: Sequence[str],
    model_path: str,
    truth_path: str | None,
    metrics_path: str,
    predictions_path: str,
    examples_path: str | None,
    failures_path: str,
    threads: int = 1,
) -> None:
    """Evaluate the Hα model on the held-out galaxies: metrics, per-galaxy predictions and (U-Net) examples.

    A diffusion model (its metadata's ``kind``) is scored on its draws
    (:func:`galmap.halpha.evaluate_draws`) and writes no examples (``examples_path`` None).
    """
    import h5py
    import numpy as np
    import torch

    from galmap.device import pick_device
    from galmap.halpha import evaluate, evaluate_draws, load_pairs
    from galmap.io import atomic_path
    from galmap.training import derived_seed, load_model
    from galmap.unet import UNet

    torch.set_num_threads(max(1, threads))
    model, meta = load_model(model_path, UNet, pick_device(params["device"]))
    failures = FailureLog("halpha")
    data = load_pairs(input_paths, target_paths, params, seed, failures)
    truth = read_table(truth_path) if truth_path else None
    if meta.get("kind") == "diffusion":
        metrics, table = evaluate_draws(data, model, meta, params, truth, failures, derived_seed(seed, 82))
        write_table(metrics_path, metrics)
        write_table(predictions_path, table)
        failures.write(failures_path)
        log.info("halpha diffusion metrics:\n%s", metrics.to_string(index=False))
        return
    metrics, table, examples = evaluate(data, model, params, truth, failures, float(meta["train_images_per_s"]))
    write_table(metrics_path, metrics)
    write_table(predictions_path, table)
    with atomic_path(examples_path, ".h5") as tmp, h5py.File(tmp, "w") as fh:
        for name, value in examples.items():
            arr = np.asarray(value)
            fh.create_dataset(name, data=arr.astype(h5py.string_dtype()) if arr.dtype.kind in "OU" else arr)
        fh.attrs["pixscale_arcsec"] = data.pixscale
        fh.attrs["aperture_arcsec"] = float(params["aperture_arcsec"])
    failures.write(failures_path)
    log.info("halpha metrics:\n%s", metrics.to_string(index=False))
