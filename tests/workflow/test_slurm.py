"""The workflow on a real SLURM: a one-node cluster on this machine (tests/slurm/start.sh), driven by
``snakemake --profile profiles/slurm`` with a small overlay for the local cluster.

Runs as root where Debian's ``slurmctld slurmd slurm-client munge`` are installed (``.ci/run`` installs them) and
the ``slurm`` extra is (``pip install -e ".[slurm]"``); skipped with the reason otherwise. In CI (``CI=true``) a
cluster that is installed but does not come up is a failure, not a skip. The teardown stops the daemons the
start launched and removes /etc/slurm/slurm.conf, so later snakemake starts do not stall on the plugin.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.workflow.test_envs import rules

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SLURM_SCRIPTS = REPO / "tests" / "slurm"
SLURM_CONF = Path("/etc/slurm/slurm.conf")
PARTITION = "main"  # the one partition start.sh defines
MAX_MEM_MB = 4000  # per job on the test cluster (2 cores share it)
# A sub-DAG that has every kind of job: the mock catalog; per-shard rendering, preprocessing, Sérsic fits,
# morphometry and VAE encoding; two trainings (VAE, CNN); the random forest; local gathers, metrics and a
# figure. The whole DAG takes about 1.75x the local run here (README); this keeps the test near 2 minutes.
TARGETS = [
    "results/structure/sersic.parquet",
    "results/structure/morphometry.parquet",
    "results/classify/metrics.csv",
    "results/figures/classify.png",
]
EXPECTED_JOBS = {"mock_catalog": 1, "mock_render": 2, "preprocess": 2, "sersic": 2, "morphometry": 2, "vae_train": 1}
EXPECTED_JOBS |= {"vae_encode": 2, "classify_rf": 1, "classify_cnn": 1}
# Columns and model metadata that measure time, not results.
TIMING = {"seconds", "images_per_s"}


def same_result(ours: Path, theirs: Path) -> bool:
    """Whether two outputs hold the same result: equal bytes, or equal but for what measures time (the
    wall-clock columns of training histories and the speed in a model's metadata) or the date a PDF was made."""
    a, b = ours.read_bytes(), theirs.read_bytes()
    if a == b:
        return True
    if ours.suffix == ".pdf":
        date = re.compile(rb"/CreationDate \(D:[^)]*\)")
        return date.sub(b"", a) == date.sub(b"", b)
    if ours.name == "history.csv":
        import pandas as pd

        x, y = pd.read_csv(ours), pd.read_csv(theirs)
        return x.drop(columns=TIMING & set(x.columns)).equals(y.drop(columns=TIMING & set(y.columns)))
    if ours.suffix == ".pt":
        import torch

        x, y = torch.load(ours, weights_only=True), torch.load(theirs, weights_only=True)
        same_weights = x["state_dict"].keys() == y["state_dict"].keys() and all(
            torch.equal(x["state_dict"][k], y["state_dict"][k]) for k in x["state_dict"]
        )
        strip = lambda meta: {k: v for k, v in meta.items() if k not in TIMING}  # noqa: E731
        return same_weights and strip(x["meta"]) == strip(y["meta"])
    return False


def _slurm_env() -> dict[str, str]:
    """The environment for the cluster's commands: no SLURM_* (the tests set SLURM_CONF=/dev/null for local runs)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A running one-node SLURM cluster; stopped, and its slurm.conf removed, at teardown."""
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("the SLURM test starts munged, slurmctld and slurmd: needs root on Linux")
    if (os.cpu_count() or 1) < 2:
        pytest.skip("the SLURM test needs 2 CPUs (rules of the test config use 2 threads)")
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        message = 'snakemake-executor-plugin-slurm is not installed (pip install -e ".[slurm]")'
        if os.environ.get("CI") == "true" and shutil.which("slurmctld", path=f"{os.environ['PATH']}:/usr/sbin"):
            pytest.fail(message)  # .ci/run installed SLURM, so it meant the plugin too
        pytest.skip(message)
    rundir = tmp_path_factory.mktemp("slurm")
    start = subprocess.run(
        [str(SLURM_SCRIPTS / "start.sh"), str(rundir)], capture_output=True, text=True, env=_slurm_env(), timeout=120
    )
    try:
        if start.returncode == 2:  # not installed, or a real cluster's config in the way
            pytest.skip(f"no local SLURM cluster: {start.stderr.strip()}")
        if start.returncode != 0:
            message = f"the local SLURM cluster did not start: {start.stdout}{start.stderr}"
            if os.environ.get("CI") == "true":
                pytest.fail(message)  # installed in CI (.ci/run) but broken: say so
            pytest.skip(message)
        yield rundir
    finally:
        subprocess.run([str(SLURM_SCRIPTS / "stop.sh"), str(rundir)], env=_slurm_env(), timeout=120, check=False)
        assert not SLURM_CONF.exists() or "galmap" not in SLURM_CONF.read_text(), "stop.sh left slurm.conf behind"


def local_cluster_overlay(profile: dict) -> dict:
    """profiles/slurm adapted to the test cluster (a --workflow-profile): one partition, no GPU, jobs that fit
    2 cores, each rule's own thread count (so results can be compared bit for bit with the local run), and
    status checks by squeue every 2 s (no accounting database; the plugin's default sacct would hang)."""

    def fit(resources: dict) -> dict:
        out = {k: v for k, v in resources.items() if k not in ("gres", "slurm_extra")}
        out["slurm_partition"] = PARTITION
        out["mem_mb"] = min(out.get("mem_mb", MAX_MEM_MB), MAX_MEM_MB)
        if "gpu" in out:
            out["gpu"] = 0
        return out

    declared = rules()
    return {
        "default-resources": fit(profile["default-resources"]),
        "set-resources": {rule: fit(res) for rule, res in profile["set-resources"].items()},
        "set-threads": {rule: declared[rule]["threads"] for rule in profile["set-threads"]},
        "slurm-status-command": "squeue",
        "slurm-init-seconds-before-status-checks": 2,
        "seconds-between-status-checks": 2,
        "restart-times": 0,
        "latency-wait": 5,
    }


@pytest.fixture(scope="module")
def overlay(tmp_path_factory) -> Path:
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    path = tmp_path_factory.mktemp("overlay")
    (path / "config.yaml").write_text(yaml.safe_dump(local_cluster_overlay(profile), sort_keys=False))
    return path


def _slurm_snakemake(args: list[str], cwd: Path, overlay: Path, snakefile: Path = REPO / "Snakefile"):
    """``snakemake --profile profiles/slurm --workflow-profile OVERLAY ARGS``, under ``timeout -k``."""
    command = ["timeout", "-k", "10", "420", sys.executable, "-m", "snakemake", "-s", str(snakefile)]
    command += ["--profile", str(REPO / "profiles" / "slurm"), "--workflow-profile", str(overlay), *args]
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=_slurm_env(), timeout=450)
    return proc, proc.stdout + proc.stderr


def test_overlay_keeps_the_profile_but_fits_the_test_cluster():
    """What the overlay changes, and only that: the profile's GPU requests and partitions become the test's."""
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert {"jobs", "restart-times", "latency-wait", "rerun-incomplete"} <= set(profile)
    assert profile["set-resources"]["vae_train"]["gpu"] == 1  # training asks for a GPU on a real cluster
    out = local_cluster_overlay(profile)
    assert set(out["set-resources"]) == set(profile["set-resources"])
    assert out["set-resources"]["vae_train"]["gpu"] == 0
    assert {res["slurm_partition"] for res in out["set-resources"].values()} == {PARTITION}
    assert out["set-threads"]["vae_train"] == rules()["vae_train"]["threads"]


def test_the_workflow_on_slurm_matches_the_local_run(cluster, overlay, local_run, tmp_path):
    """Every file the SLURM run wrote holds the local run's result: the same bytes for every table, image
    store and PNG (sersic.parquet, morphometry.parquet, latents, metrics.csv...), the same weights for the
    models (timing metadata aside); one sbatch job per shard and per training, the gathers local."""
    config = str(REPO / "config" / "test.yaml")
    proc, log = _slurm_snakemake([*TARGETS, "--configfile", config], tmp_path, overlay)
    assert proc.returncode == 0, log[-6000:]
    # one sbatch job per shard for the per-galaxy stages (2 shards; the targets need the DECaLS images and
    # the VAE of latent_dim only), one per training; gathers, metrics and the figure ran locally
    submitted = Counter(re.findall(r"submitted with SLURM jobid \d+ \(log: \S*/slurm_logs/rule_(\w+)/", log))
    assert submitted == EXPECTED_JOBS, log[-3000:]
    produced = sorted(p.relative_to(tmp_path) for p in (tmp_path / "results").rglob("*") if p.is_file())
    produced += sorted(p.relative_to(tmp_path) for p in (tmp_path / "data").rglob("*") if p.is_file())
    assert len(produced) > 30 and Path(TARGETS[2]) in produced
    different = [str(rel) for rel in produced if not same_result(tmp_path / rel, local_run / rel)]
    assert not different, f"differ from the local run: {different}"


FAILING_SNAKEFILE = """
rule all:
    input: "ok.txt", "broken.txt"

rule fine:
    output: "ok.txt"
    threads: 1
    resources: mem_mb=100, runtime=2
    shell: "echo fine > {output}"

rule broken:
    output: "broken.txt"
    threads: 1
    resources: mem_mb=100, runtime=2
    shell: "echo 'about to fail' >&2; exit 3"
"""


def test_a_failing_rule_is_reported_as_failed(cluster, overlay, tmp_path):
    """A job that exits non-zero on the cluster fails the run, and the log names the rule and its SLURM job."""
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(FAILING_SNAKEFILE)
    proc, log = _slurm_snakemake([], tmp_path, overlay, snakefile=snakefile)
    assert proc.returncode != 0, log[-3000:]
    assert "Error in rule broken" in log, log[-3000:]
    assert "SLURM" in log and "rule_broken" in log, log[-3000:]
    assert (tmp_path / "ok.txt").read_text() == "fine\n"  # keep-going: the other job still ran
    assert not (tmp_path / "broken.txt").exists()


def test_same_result_ignores_only_what_measures_time(tmp_path):
    """The comparison forgives timing columns and PDF dates, not a changed number."""
    import pandas as pd

    history = pd.DataFrame({"epoch": [0, 1], "seconds": [0.5, 0.4], "train_loss": [2.0, 1.5]})
    for name in "abc":
        (tmp_path / name).mkdir()
    history.to_csv(tmp_path / "a" / "history.csv", index=False)
    history.assign(seconds=[0.7, 0.1]).to_csv(tmp_path / "b" / "history.csv", index=False)
    history.assign(train_loss=[2.0, 1.50001]).to_csv(tmp_path / "c" / "history.csv", index=False)
    assert same_result(tmp_path / "a" / "history.csv", tmp_path / "b" / "history.csv")
    assert not same_result(tmp_path / "a" / "history.csv", tmp_path / "c" / "history.csv")
    for name, text in {"a": b"%PDF /CreationDate (D:2026) x", "b": b"%PDF /CreationDate (D:2027) x"}.items():
        (tmp_path / name / "f.pdf").write_bytes(text)
    (tmp_path / "c" / "f.pdf").write_bytes(b"%PDF /CreationDate (D:2026) y")
    assert same_result(tmp_path / "a" / "f.pdf", tmp_path / "b" / "f.pdf")
    assert not same_result(tmp_path / "a" / "f.pdf", tmp_path / "c" / "f.pdf")
    (tmp_path / "a" / "t.parquet").write_bytes(b"1")
    (tmp_path / "b" / "t.parquet").write_bytes(b"2")
    assert not same_result(tmp_path / "a" / "t.parquet", tmp_path / "b" / "t.parquet")
