"""Interrupted and repeated runs: kills at representative points, reruns, and what a changed parameter reruns.

Small sub-DAGs of a copy of the session's finished run of config/test.yaml (conftest's ``local_run``):
SIGKILL during VAE training resumes from its checkpoint to the same weights; SIGTERM during a render
shard, rerun with ``--rerun-incomplete``, gives the same shard as the uninterrupted run; no partially
written file is ever under its final name. ``benchmarks/faults.py`` runs the full kill matrix (four
points, two signals) and prints the seconds each kill costs.
"""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from galmap.core.io import read_shard
from tests.interrupt import copy_run, kill_when, partial_files, rerun, snakemake, write_config

SURVEYS = ("decals", "bass", "mzls", "euclid", "sdss", "halpha")


@pytest.mark.slow
def test_sigkill_during_vae_training_resumes_from_its_checkpoint(local_run: Path, tmp_path: Path):
    changes = {"vae.max_epochs": 40, "vae.patience": 40}  # long enough to be killed after a checkpoint
    target = ["results/vae/z2/model.pt", "results/vae/z2/history.csv"]
    ref = copy_run(local_run, tmp_path / "reference")
    args = [*target, "--cores", "1", "--configfile", write_config(tmp_path / "long.yaml", changes)]
    snakemake(args, ref)

    run = copy_run(local_run, tmp_path / "killed")
    ckpt = run / "results/vae/z2/checkpoint.pt"
    kill_when(args, run, ckpt.exists, signal.SIGKILL)
    assert ckpt.exists() and not (run / target[0]).exists() and not (run / target[1]).exists()
    rerun(args, run)  # --unlock (SIGKILL leaves the lock), then --rerun-incomplete
    assert "resuming from the checkpoint after epoch" in (run / "logs/vae/train-z2.log").read_text()
    assert not ckpt.exists()  # removed once the model is written
    a = torch.load(ref / target[0], weights_only=True)["state_dict"]
    b = torch.load(run / target[0], weights_only=True)["state_dict"]
    for name, value in a.items():
        assert torch.equal(value, b[name]), name  # bit-identical on CPU
    ha, hb = pd.read_csv(ref / target[1]), pd.read_csv(run / target[1])
    losses = [c for c in ha.columns if c.startswith(("train_", "val_"))]
    assert len(ha) == 40 and ha[["epoch", *losses]].equals(hb[["epoch", *losses]])
    assert not [p for p in partial_files(run / "results") if "checkpoint" not in p.name]


@pytest.mark.slow
def test_sigterm_during_a_render_shard_then_rerun_incomplete_equals_the_uninterrupted_run(local_run, tmp_path):
    run = copy_run(local_run, tmp_path / "killed")
    config = write_config(tmp_path / "test.yaml")
    outputs = [f"data/mock/{s}/shard-0001.h5" for s in SURVEYS] + ["results/data/shards/failures-0001.csv"]
    log = run / "logs/data/render-0001.log"
    log.unlink()
    args = [*outputs, "--cores", "1", "--configfile", config]  # targets first: --configfile takes several
    kill_when([*args, "--forcerun", "mock_render"], run, lambda: log.exists() and log.stat().st_size > 0,
              signal.SIGTERM, delay_s=1.0)  # fmt: skip
    for name in outputs:  # nothing half-written under a final name: absent, or complete and readable
        path = run / name
        if path.exists() and path.suffix == ".h5":
            read_shard(path)
    assert not (run / ".snakemake/locks").exists() or not any((run / ".snakemake/locks").iterdir())  # SIGTERM: no lock
    rerun(args, run)
    for name in outputs:
        if name.endswith(".h5"):
            a, b = read_shard(local_run / name), read_shard(run / name)
            assert np.array_equal(a.images, b.images) and np.array_equal(a.ivar, b.ivar), name
            assert list(a.ids) == list(b.ids) and a.attrs == b.attrs
        else:
            assert (local_run / name).read_text() == (run / name).read_text()
    proc, _ = snakemake(["-n", "--configfile", config], run)
    assert "rule mock_render:" not in proc.stdout  # the rerun shard is identical in Snakemake's eyes too


# A changed setting reruns only the rules that read it (and what depends on their outputs).
RERUNS = {
    # setting: (new value, rules that must rerun, rules that must not)
    "outliers.threshold_sigma": (3.0, ["outliers", "figure_outliers"], ["vae_train", "vae_encode", "anomalies"]),
    "outliers.discovery_scores": (["m20_sigma"], ["anomalies"], ["outliers", "vae_encode", "morphometry"]),
    "structure.morph_band": ("g", ["morphometry"], ["sersic", "vae_train", "preprocess"]),
    "structure.morphometry": ("statmorph", ["morphometry", "flow_closure"], ["sersic", "vae_train", "preprocess"]),
    "structure.max_iter": (20, ["sersic", "superres_train"], ["morphometry", "vae_train"]),  # the Sérsic base
    "superres.n_draws": (3, ["superres_evaluate"], ["superres_train"]),
    "superres.regression_epochs": (2, ["superres_train"], ["vae_train"]),
    "superres.loss_weight_power": (0.5, ["superres_train", "superres_evaluate"], ["vae_train", "preprocess"]),
    "superres.sersic_base": (False, ["superres_train", "superres_evaluate"], ["sersic", "vae_train", "preprocess"]),
    "halpha.detect_snr": (2.0, ["halpha_evaluate", "halpha_diffusion_evaluate"], ["halpha_train"]),
    "halpha.diffusion.n_draws": (
        3,
        ["halpha_diffusion_evaluate"],
        ["halpha_train", "halpha_evaluate"],
    ),
    "halpha.diffusion.epochs": (2, ["halpha_train", "halpha_diffusion_evaluate"], ["halpha_evaluate"]),
    "classify.rf": ({"n_estimators": 30}, ["classify_rf"], ["classify_cnn", "domain_dann", "classify_targets"]),
    "vae.latent_scan": ([2, 4, 6], ["vae_train"], ["preprocess", "classify_cnn", "outliers"]),
    "domain.batch_size": (4, ["domain_predict"], ["domain_dann", "domain_distill", "classify_cnn", "vae_train"]),
    "mock.volunteers.votes_mean": (
        30,
        ["mock_labels", "classify_targets"],
        ["mock_catalog", "mock_render", "preprocess", "vae_train", "sersic"],
    ),
    "mock.volunteers.perception_scatter_dex": (
        0.3,
        ["mock_labels", "classify_targets"],
        ["mock_catalog", "mock_render", "preprocess", "vae_train", "sersic"],
    ),
    "domain.distill.members": (3, ["domain_distill", "domain_predict"], ["domain_dann", "classify_cnn"]),
    # one survey's setting: preprocessing runs one job per shard for every survey (rule preprocess), so the shards
    # of every survey, and what reads them, are made again; the data are not
    "preprocess.surveys.euclid.smooth_fwhm_px": (
        4.0,
        ["preprocess", "superres_train", "superres_evaluate"],
        ["mock_catalog", "mock_render"],
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("setting", list(RERUNS))
def test_a_changed_setting_reruns_only_what_reads_it(setting, local_run: Path, tmp_path: Path):
    value, rerun, kept = RERUNS[setting]
    config = write_config(tmp_path / "changed.yaml", {setting: value})
    proc, _ = snakemake(["-n", "--configfile", config], local_run)
    out = proc.stdout
    for rule in rerun:
        assert f"rule {rule}:" in out, (setting, rule, out[-2000:])
    for rule in kept:
        assert f"rule {rule}:" not in out, (setting, rule, out[-2000:])
    if setting == "superres.regression_epochs":  # one model's epochs do not retrain the other model
        assert "output: results/superres/diffusion/model.pt" not in out
        assert "output: results/superres/regression/model.pt" in out
    if setting == "superres.loss_weight_power":  # both models' loss: both retrain
        assert "output: results/superres/diffusion/model.pt" in out
        assert "output: results/superres/regression/model.pt" in out
    if setting == "halpha.diffusion.epochs":  # the diffusion model's epochs do not retrain the U-Net
        assert "output: results/halpha/diffusion/model.pt" in out
        assert "output: results/halpha/regression/model.pt" not in out
    if setting.startswith("preprocess.surveys.euclid"):  # one job per shard, writing each survey's own file
        assert "results/images/euclid/shard-0000.h5" in out
        assert "results/images/decals/shard-0000.h5" in out


@pytest.mark.slow
def test_the_same_config_twice_has_nothing_to_rerun(local_run: Path, tmp_path: Path):
    proc, _ = snakemake(["-n", "--configfile", write_config(tmp_path / "same.yaml")], local_run)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_a_checkpoint_of_other_inputs_is_not_resumed(rendered, test_config, tmp_path, monkeypatch, caplog):
    """Killed, then the inputs rewritten (a changed upstream setting): the rerun starts over, and its
    weights are those of an uninterrupted run on the new inputs, not a resumption of the old ones."""
    import galmap.latent.vae
    from galmap.core.io import write_shard
    from galmap.latent.vae import train_vae
    from galmap.preprocess.stamps import preprocess_shard

    params = dict(test_config["vae"]) | {"device": "cpu", "max_epochs": 3, "patience": 3}
    shard = preprocess_shard(rendered["decals"], test_config["preprocess"])
    path = tmp_path / "shard-0000.h5"
    write_shard(path, shard)
    make_step = galmap.latent.vae.make_step

    class Killed(Exception):
        pass

    def dying_step(*a):
        step = make_step(*a)

        def run(model, batch, epoch, gen, training):
            if epoch == 2:
                raise Killed
            return step(model, batch, epoch, gen, training)

        return run

    ckpt = tmp_path / "checkpoint.pt"
    monkeypatch.setattr(galmap.latent.vae, "make_step", dying_step)
    with pytest.raises(Killed):
        train_vae([path], params, 2, 7, checkpoint=ckpt, progress=False)
    monkeypatch.setattr(galmap.latent.vae, "make_step", make_step)
    assert ckpt.exists()
    shard.images[:, :, :, :] = shard.images[:, :, ::-1, :]  # the same file name, other images
    write_shard(path, shard)
    with caplog.at_level("INFO", logger="galmap"):
        resumed, _, _ = train_vae([path], params, 2, 7, checkpoint=ckpt, progress=False)
    assert "is from other settings; starting over" in caplog.text
    fresh, _, _ = train_vae([path], params, 2, 7, progress=False)
    for name, value in fresh.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
