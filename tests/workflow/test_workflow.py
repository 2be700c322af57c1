"""End to end: the Snakemake DAG on the tiny test config, run as a user would run it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from galmap.core.galaxyzoo import QUESTIONS
from galmap.core.io import read_shard
from tests.conftest import REPO
from tests.conftest import run_snakemake as _run


def _changed_config(path: Path, section: str, key: str, value) -> str:
    """Write the test config with one key changed to ``path``; return the path for --configfile."""
    import yaml

    cfg = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    cfg[section][key] = value
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


@pytest.fixture(scope="module")
def workdir(local_run):
    """The local run of the test config (conftest's session fixture, shared with the SLURM test)."""
    return local_run


@pytest.mark.slow
def test_outputs_exist_and_hold_what_they_should(workdir: Path, test_config):
    n = test_config["mock"]["n_galaxies"]
    truth = pd.read_parquet(workdir / "results/catalog/truth.parquet")
    labels = pd.read_parquet(workdir / "results/catalog/labels.parquet")
    catalog = pd.read_parquet(workdir / "results/catalog/catalog.parquet")
    assert len(truth) == len(labels) == len(catalog) == n
    assert truth["id"].is_unique and list(truth["id"]) == list(labels["id"])
    for q in QUESTIONS:
        assert labels[q.class_col].between(-1, len(q.classes) - 1).all()
    counts = pd.read_csv(workdir / "results/catalog/class_counts.csv")
    assert set(counts["question"]) == {q.name for q in QUESTIONS}
    for stage in ("data", "preprocess"):
        fails = pd.read_csv(workdir / f"results/{stage}/failures.csv")
        assert list(fails.columns) == ["id", "stage", "reason"]
    seen = []
    for survey, cfg in test_config["surveys"].items():
        for shard in ("0000", "0001"):
            raw = read_shard(workdir / f"data/mock/{survey}/shard-{shard}.h5")
            out = read_shard(workdir / f"results/images/{survey}/shard-{shard}.h5")
            assert raw.images.shape == (12, len(cfg["bands"]), cfg["stamp_px"], cfg["stamp_px"])
            assert out.attrs["survey"] == survey and out.bands == cfg["bands"]
            assert out.attrs["pixscale_arcsec"] == pytest.approx(cfg["pixscale_arcsec"])
            assert len(out.attrs["psf_fwhm_arcsec"]) == len(cfg["bands"])
            assert {"segmap", "mask", "psf", "background", "flags"} <= set(out.extra)
            assert list(out.ids) == list(raw.ids)
            assert np.isfinite(out.images).all()
            if survey == "decals":
                seen += list(out.ids)
    assert seen == list(truth["id"])
    # structure: a Sérsic row per galaxy and band, a morphometry row per galaxy
    sersic = pd.read_parquet(workdir / "results/structure/sersic.parquet")
    morph = pd.read_parquet(workdir / "results/structure/morphometry.parquet")
    bands = test_config["surveys"][test_config["structure"]["survey"]]["bands"]
    assert len(sersic) == n * len(bands) and set(sersic["id"]) == set(truth["id"])
    assert len(morph) == n and list(morph["id"]) == list(truth["id"])
    assert {"n", "n_err", "re_arcsec", "re_err", "q", "pa_deg", "mag", "mag_err", "chi2_nu", "flag"} <= set(sersic)
    assert {"concentration", "asymmetry", "smoothness", "gini", "m20", "flag"} <= set(morph)
    assert sersic["n"].notna().mean() > 0.9 and morph["gini"].notna().mean() > 0.9
    fails = pd.read_csv(workdir / "results/structure/failures.csv")
    assert list(fails.columns) == ["id", "stage", "reason"]


@pytest.mark.slow
def test_latent_space_and_outliers(workdir: Path, test_config):
    """One model and a latents row per galaxy for every latent size; the scan; outliers with truth."""
    from galmap.latent.vae import ConvVAE
    from galmap.nn.training import load_model

    vae = test_config["vae"]
    truth = pd.read_parquet(workdir / "results/catalog/truth.parquet")
    sizes = sorted(set(vae["latent_scan"]) | {vae["latent_dim"]})
    for k in sizes:
        model, meta = load_model(workdir / f"results/vae/z{k}/model.pt", ConvVAE)
        assert model.latent_dim == k and meta["bands"] == ["g", "r", "z"]
        lat = pd.read_parquet(workdir / f"results/vae/z{k}/latents.parquet")
        assert list(lat["id"]) == list(truth["id"])
        assert [c for c in lat.columns if c.startswith("mu_")] == [f"mu_{i}" for i in range(k)]
        assert set(lat["split"]) == {"train", "val", "test"}
        assert lat["ssim"].between(-1, 1).all() and (lat["chi2_nu"] > 0).all()
        hist = pd.read_csv(workdir / f"results/vae/z{k}/history.csv")
        assert len(hist) == vae["max_epochs"] and hist["best"].sum() == 1
        assert not (workdir / f"results/vae/z{k}/checkpoint.pt").exists()
    scan = pd.read_csv(workdir / "results/vae/ssim_vs_latents.csv")
    assert list(scan["latent_dim"]) == sizes
    assert {"ssim_mean", "mse_mean", "mae_mean", "n_test"} <= set(scan.columns) and (scan["n_test"] > 0).all()
    out = pd.read_parquet(workdir / "results/outliers/outliers.parquet")
    assert list(out["id"]) == list(truth["id"])
    assert {"mahalanobis_sigma", "recon_chi2", "recon_sigma", "is_outlier"} <= set(out.columns)
    metrics = pd.read_csv(workdir / "results/outliers/metrics.csv").set_index("kind")
    assert metrics.loc["all", "n"] == (truth["anomaly"] != "none").sum() == 3
    assert metrics.loc["none", "n"] == len(truth) - 3
    # the ROC curve and its area against scikit-learn's, from the scores and the mock's truth
    from sklearn.metrics import roc_auc_score, roc_curve

    roc = pd.read_csv(workdir / "results/outliers/roc.csv")
    is_anomaly = out["id"].map(truth.set_index("id")["anomaly"]) != "none"
    scores = out["outlier_score"].fillna(out["outlier_score"].min() - 1)  # unscored galaxies rank last
    fpr, tpr, _ = roc_curve(is_anomaly, scores, drop_intermediate=False)
    np.testing.assert_allclose(roc[["fpr", "tpr"]].to_numpy(), np.c_[fpr, tpr])
    assert metrics.loc["all", "roc_auc"] == pytest.approx(roc_auc_score(is_anomaly, scores))


@pytest.mark.slow
def test_classification_and_flow_outputs(workdir: Path, test_config):
    """metrics.csv has both models for every question on the same test galaxies; the flow's closure files."""
    metrics = pd.read_csv(workdir / "results/classify/metrics.csv")
    assert set(metrics["model"]) == {"rf_latent", "cnn_image"}
    assert list(dict.fromkeys(metrics["question"])) == [q.name for q in QUESTIONS]
    targets = pd.read_parquet(workdir / "results/classify/targets.parquet")
    for model in ("rf_latent", "cnn_image"):
        preds = pd.read_parquet(workdir / f"results/classify/{model}/predictions.parquet")
        test = targets[targets["split"] == "test"].set_index(["id", "question"]).index
        assert set(preds[preds["split"] == "test"].set_index(["id", "question"]).index) == set(test), model
        m = metrics[metrics["model"] == model].set_index("question")
        n_test = targets[targets["split"] == "test"].groupby("question").size()
        assert (m["n_test"] == n_test.reindex(m.index, fill_value=0)).all()
    assert metrics["accuracy"].between(0, 1).all() and (metrics["n_classes"] >= 2).all()
    conf = pd.read_csv(workdir / "results/classify/confusion.csv")
    sums = conf.groupby(["question", "model"])["count"].sum()
    assert (sums == metrics.set_index(["question", "model"])["n_test"].reindex(sums.index)).all()
    assert list(pd.read_csv(workdir / "results/classify/failures.csv").columns) == ["id", "stage", "reason"]
    closure = pd.read_csv(workdir / "results/flow/closure.csv")
    names = test_config["flow"]["parameters"]
    assert list(dict.fromkeys(closure["parameter"])) == names
    data = pd.read_parquet(workdir / "results/flow/data.parquet")
    n_req = min(test_config["flow"]["closure_n"], int((data["split"] == "test").sum()))
    assert (closure.groupby(["latent", "parameter"]).size() == n_req).all()
    assert set(closure["latent"]) == {"sampled", "central"}
    summary = pd.read_csv(workdir / "results/flow/closure_spearman.csv")
    assert list(summary["parameter"]) == 2 * names and (summary["n_requested"] == n_req).all()
    failures = pd.read_csv(workdir / "results/flow/failures.csv")
    unmeasured = closure.groupby(["latent", "id"])["measured"].apply(lambda v: v.isna().any())
    # every unmeasured generated galaxy says why
    assert {f"gen-{lat}-{gid}" for lat, gid in unmeasured[unmeasured].index} <= set(failures["id"])
    gallery = read_shard(workdir / "results/flow/gallery.h5")
    vary = test_config["flow"]["gallery_parameters"]
    assert len(gallery) == len(vary) * test_config["flow"]["gallery_steps"] and np.isfinite(gallery.images).all()


@pytest.mark.slow
def test_domain_outputs(workdir: Path, test_config):
    """Target stamps on the source grid for every galaxy; metrics for every method, domain and question."""
    from galmap.classify.cnn import MorphologyCNN
    from galmap.domain.adaptation import CNNEnsemble
    from galmap.nn.training import load_model

    truth = pd.read_parquet(workdir / "results/catalog/truth.parquet")
    source = read_shard(workdir / "results/images/decals/shard-0000.h5", datasets=())
    pairs = {p["name"]: p for p in test_config["domain"]["pairs"]}
    assert list(pairs) == ["bass_mzls", "sdss"]
    for name, survey in (("bass_mzls", "bass+mzls"), ("sdss", "sdss")):
        target = read_shard(workdir / f"results/domain/{name}/target/shard-0000.h5")
        assert list(target.ids) == list(source.ids) and target.images.shape[1:] == (3, 48, 48)
        assert target.attrs["pixscale_arcsec"] == source.attrs["pixscale_arcsec"]
        assert target.attrs["norm_softening"] == source.attrs["norm_softening"]
        assert target.attrs["survey"] == survey and np.isfinite(target.images).all()
        assert (target.ivar > 0).mean() > 0.5
    all_metrics = pd.read_csv(workdir / "results/domain/metrics.csv")
    assert list(dict.fromkeys(all_metrics["pair"])) == list(pairs)
    summary = pd.read_csv(workdir / "results/domain/summary.csv")
    assert set(summary["pair"]) == set(pairs) and (summary["question"] == "mean").sum() == 2
    assert (summary["unadapted_lo"] <= summary["unadapted"]).all()
    assert (summary["unadapted"] <= summary["unadapted_hi"]).all()
    metrics = all_metrics[all_metrics["pair"] == "bass_mzls"]
    questions = set(pd.read_csv(workdir / "results/classify/classes.csv")["question"])
    combos = {("source_only", "source"), ("source_only", "target"), ("adabn", "source"), ("adabn", "target"),
              ("dann", "source"), ("dann", "target"), ("distill", "source"), ("distill", "target")}  # fmt: skip
    assert test_config["domain"]["reference"]  # the test config also trains the target-supervised reference
    combos |= {("target_supervised", "source"), ("target_supervised", "target")}
    for q in questions | {"mean"}:
        got = metrics[metrics["question"] == q]
        assert set(zip(got["method"], got["domain"], strict=True)) == combos, q
    per_q = metrics[metrics["question"] != "mean"]
    assert per_q["accuracy"].between(0, 1).all() and (per_q["n_test"] > 0).all()
    assert (per_q.loc[per_q["method"] == "source_only", "change"] == 0).all()
    hist = pd.read_csv(workdir / "results/domain/bass_mzls/dann/history.csv")
    assert len(hist) == test_config["domain"]["dann"]["max_epochs"]
    model, meta = load_model(workdir / "results/domain/bass_mzls/dann/model.pt", MorphologyCNN)
    assert meta["adapted"] == "dann" and sorted(meta["questions"]) == sorted(questions)
    for name in pairs:  # the second pair's override (one student) applies to it alone
        ensemble, meta = load_model(workdir / f"results/domain/{name}/distill/model.pt", CNNEnsemble)
        members = (pairs[name]["distill"] or {}).get("members", test_config["domain"]["distill"]["members"])
        assert meta["adapted"] == "distill" and len(ensemble.members) == members
    assert len(load_model(workdir / "results/domain/bass_mzls/distill/model.pt", CNNEnsemble)[0].members) == 2
    hist = pd.read_csv(workdir / "results/domain/bass_mzls/distill/history.csv")
    assert len(hist) == test_config["domain"]["distill"]["epochs"] and np.isfinite(hist["train_kl"]).all()
    failures = pd.read_csv(workdir / "results/domain/failures.csv")
    assert list(failures.columns) == ["id", "stage", "reason"] and set(failures["id"]) <= set(truth["id"])


@pytest.mark.slow
def test_superres_and_halpha_outputs(workdir: Path, test_config):
    from galmap.images2images.halpha import METRIC_COLUMNS as HA_COLUMNS
    from galmap.images2images.superres import METRIC_COLUMNS, RE_COLUMNS

    truth = pd.read_parquet(workdir / "results/catalog/truth.parquet")
    metrics = pd.read_csv(workdir / "results/superres/metrics.csv")
    assert list(metrics.columns) == METRIC_COLUMNS
    assert list(metrics["method"]) == ["decals", "sersic_base", "bicubic", "regression", "diffusion", "euclid"]
    re = pd.read_parquet(workdir / "results/superres/re_compare.parquet")
    assert list(re.columns) == RE_COLUMNS and len(re) > 0 and set(re["id"]) <= set(truth["id"])
    assert (re["re_euclid_arcsec"].dropna() > 0).all()
    for name in ("diffusion", "regression"):
        hist = pd.read_csv(workdir / f"results/superres/{name}/history.csv")
        assert len(hist) == test_config["superres"][f"{name}_epochs"]
    ha = pd.read_csv(workdir / "results/halpha/metrics.csv")
    assert list(ha.columns) == HA_COLUMNS and list(ha["subset"]) == ["all", "detectable"]
    pred = pd.read_parquet(workdir / "results/halpha/predictions.parquet")
    assert np.allclose(pred["flux_true"], truth.set_index("id").loc[pred["id"], "flux_Ha"])
    # the optional Hα diffusion model (on in the test config): its draws' metrics, per galaxy the truth's flux
    from galmap.images2images.halpha import DRAW_METRIC_COLUMNS

    draws = pd.read_csv(workdir / "results/halpha/diffusion/metrics.csv")
    assert list(draws.columns) == HA_COLUMNS + DRAW_METRIC_COLUMNS
    assert (draws["n_draws"] == test_config["halpha"]["diffusion"]["n_draws"]).all()
    pred_d = pd.read_parquet(workdir / "results/halpha/diffusion/predictions.parquet")
    assert list(pred_d["id"]) == list(pred["id"])
    # both metrics tables against their flux scatter recomputed from the predictions and the mock's truth
    from scipy.stats import median_abs_deviation

    for table, per_galaxy in ((ha, pred), (draws, pred_d)):
        ratio = np.log10(per_galaxy["flux_pred"] / truth.set_index("id").loc[per_galaxy["id"], "flux_Ha"].to_numpy())
        ratio = ratio[np.isfinite(ratio)]
        row = table.set_index("subset").loc["all"]
        assert row["n_flux"] == len(ratio)
        assert row["flux_log_scatter_dex"] == pytest.approx(median_abs_deviation(ratio, scale="normal"), rel=1e-6)
    hist = pd.read_csv(workdir / "results/halpha/diffusion/history.csv")
    assert len(hist) == test_config["halpha"]["diffusion"]["epochs"]
    for stage in ("superres", "halpha", "halpha/diffusion"):
        failures = pd.read_csv(workdir / f"results/{stage}/failures.csv")
        assert list(failures.columns) == ["id", "stage", "reason"] and set(failures["id"]) <= set(truth["id"])


@pytest.mark.slow
def test_unified_outputs(workdir: Path, test_config):
    """The unified latent space: latents per survey set, retrieval per survey pair, goals, translations."""
    import h5py

    cfg = test_config["unified"]
    truth = pd.read_parquet(workdir / "results/catalog/truth.parquet")
    lat = pd.read_parquet(workdir / "results/unified/latents.parquet")
    assert {"joint", "bass+mzls", *cfg["surveys"]} == set(lat["survey"]) and set(lat["id"]) <= set(truth["id"])
    assert f"mu_{cfg['latent_dim'] - 1}" in lat and np.isfinite(lat.filter(like="mu_").to_numpy()).all()
    ret = pd.read_csv(workdir / "results/unified/retrieval.csv")
    n = len(cfg["surveys"])
    assert len(ret) == 2 * n * (n - 1) and set(ret["method"]) == {"unified", "measured"}
    metrics = pd.read_csv(workdir / "results/unified/metrics.csv")
    assert {"retrieval", "invariance", "classification", "translation"} <= set(metrics["use"])
    assert list(metrics.columns) == ["use", "source", "target", "metric", "value", "reference", "goal", "met"]
    hist = pd.read_csv(workdir / "results/unified/history.csv")
    assert len(hist) == cfg["max_epochs"]
    with h5py.File(workdir / "results/unified/translations.h5") as fh:
        assert len(fh["ids"]) <= cfg["n_examples"]
    failures = pd.read_csv(workdir / "results/unified/failures.csv")
    assert list(failures.columns) == ["id", "stage", "reason"]


FIGURES = ["survey_examples", "sersic_truth", "sersic_residuals", "morphometry", "vae", "outliers"]
FIGURES += ["classify", "flow", "domain", "superres", "halpha", "unified"]


@pytest.mark.slow
def test_figures_and_the_report(workdir: Path):
    """Every figure as PDF and PNG; the Snakemake report holds every figure and its caption."""
    for name in FIGURES:
        for ext in ("pdf", "png"):
            path = workdir / f"results/figures/{name}.{ext}"
            assert path.stat().st_size > 5000, path
        assert (workdir / f"results/figures/{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = workdir / "results/report.html"
    _run(["--report", str(report), "--configfile", str(REPO / "config" / "test.yaml")], workdir)
    html = report.read_text()
    for name in FIGURES:
        assert f"{name}.png" in html, name
        words = (REPO / "workflow/report" / f"{name}.rst").read_text().split()
        ascii_prefix = " ".join(words[: min(6, next((i for i, w in enumerate(words) if not w.isascii()), 6))])
        assert len(ascii_prefix) > 10 and ascii_prefix in html, name  # the report escapes non-ASCII


@pytest.mark.slow
def test_rerun_has_nothing_to_do(workdir: Path):
    proc = _run(["-n", "--configfile", str(REPO / "config" / "test.yaml")], workdir)
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_changing_a_preprocess_parameter_reruns_only_preprocessing(workdir: Path, test_config):
    changed = _changed_config(workdir / "changed.yaml", "preprocess", "mask_dilate_px", 3)
    proc = _run(["-n", "--configfile", changed], workdir)
    out = proc.stdout + proc.stderr
    assert "preprocess" in out
    assert "mock_render" not in out and "mock_catalog" not in out


@pytest.mark.slow
def test_changing_the_vae_reruns_only_the_latent_space(workdir: Path):
    changed = _changed_config(workdir / "changed_vae.yaml", "vae", "learning_rate", 0.001)
    out = _run(["-n", "--configfile", changed], workdir).stdout
    assert "vae_train" in out and "outliers" in out
    for rule in ("mock_render", "preprocess", "sersic", "morphometry"):
        assert f"rule {rule}:" not in out and f"\n{rule} " not in out, rule


def _job_counts(out: str) -> dict[str, int]:
    """The dry run's job stats table: rule -> number of jobs."""
    table = out.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    rows = [line.split() for line in table.splitlines()[3:]]
    return {row[0]: int(row[1]) for row in rows if len(row) == 2 and row[1].isdigit()}


def test_a_one_key_overlay_runs_the_pipeline(tmp_path):
    """``--configfile`` with one key: the embedded default's DAG, with that key changed (not "'seed' is a
    required property"); a second file merges on top and a null removes what the default has."""
    (tmp_path / "one_key.yaml").write_text("vae: {latent_scan: [4, 40]}\n")
    proc = _run(["-n", "--configfile", "one_key.yaml"], tmp_path)
    jobs = _job_counts(proc.stdout)
    assert jobs["vae_train"] == 2  # the overlay's scan (4, 40; latent_dim 40 is the default's)
    # the default's 2400 galaxies, 600 a shard; one preprocess job a shard for every survey
    assert jobs["mock_render"] == 4 and jobs["preprocess"] == 4
    (tmp_path / "no_manga.yaml").write_text("surveys: {sdss: null, halpha: null}\n")
    proc = _run(["-n", "--configfile", "one_key.yaml", "no_manga.yaml"], tmp_path)
    jobs = _job_counts(proc.stdout)
    assert jobs["vae_train"] == 2 and jobs["preprocess"] == 4
    assert "results/images/bass/shard-0000.h5" in proc.stdout and "results/images/sdss/" not in proc.stdout
    assert not [rule for rule in jobs if rule.startswith("halpha")]
    assert "stage 'halpha' skipped" in proc.stdout + proc.stderr


def test_bad_config_stops_with_the_key_named(tmp_path):
    proc = _run(["-n", "--config", "shard_size=-3"], tmp_path, check=False)
    assert proc.returncode != 0
    assert "config key 'shard_size'" in proc.stdout + proc.stderr


def test_lint_is_clean():
    proc = _run(["--lint", "--configfile", str(REPO / "config" / "test.yaml")], REPO, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "good condition" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_dvc_pull_on_a_fresh_copy_has_nothing_to_rerun(workdir: Path, tmp_path):
    """Push a finished run with DVC, pull it into a fresh copy with hostile timestamps:
    `snakemake -n` has nothing to do, and a changed parameter still reruns what depends on it."""
    import shutil

    from galmap.data.dvc import run_dvc

    config = str(REPO / "config" / "test.yaml")
    run_dvc("init", "--no-scm", "--quiet", cwd=workdir)
    run_dvc("config", "core.analytics", "false", cwd=workdir)
    run_dvc("remote", "add", "--default", "local", str(tmp_path / "store"), cwd=workdir)
    _run(["dvc_push", "--cores", "1", "--configfile", config], workdir)
    assert (workdir / "logs/dvc/pushed.txt").read_text().split() == ["data", "results", ".snakemake/metadata"]

    clone = tmp_path / "clone"  # what git carries: the DVC config and the .dvc files
    (clone / ".dvc").mkdir(parents=True)
    (clone / ".snakemake").mkdir()
    shutil.copy(workdir / ".dvc/config", clone / ".dvc/config")
    for name in ("data.dvc", "results.dvc", ".snakemake/metadata.dvc"):
        shutil.copy(workdir / name, clone / name)
    run_dvc("pull", "--quiet", cwd=clone)
    assert (clone / "results/vae/z4/model.pt").read_bytes() == (workdir / "results/vae/z4/model.pt").read_bytes()
    # the trap: restored files get new timestamps in any order; make every input newer than
    # every output (all after the checkout, as on a fresh clone: Snakemake reruns a script
    # rule whose script is newer than its outputs, which is right after an edit)
    now = time.time()
    for path in (clone / "results").rglob("*"):
        os.utime(path, (now, now))
    for path in (clone / "data").rglob("*"):
        os.utime(path, (now + 100, now + 100))
    _run(["--touch", "--cores", "1", "--configfile", config], clone)  # the README's step after a pull
    for path in (clone / "results").rglob("*"):  # nothing was recomputed, only touched
        original = workdir / path.relative_to(clone)
        if path.is_file() and original.is_file():
            assert path.read_bytes() == original.read_bytes(), path
    out = _run(["-n", "--configfile", config], clone).stdout
    assert "Nothing to be done" in out, out[-3000:]

    changed = _changed_config(tmp_path / "changed.yaml", "preprocess", "mask_dilate_px", 3)
    out = _run(["-n", "--configfile", changed], clone).stdout
    assert "rule preprocess:" in out and "rule vae_train:" in out
    assert "rule mock_render:" not in out and "rule mock_catalog:" not in out
