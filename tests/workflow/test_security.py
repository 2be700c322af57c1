"""Security rules, one test (or table of cases) each: ids never leave their folder, YAML is loaded safely,
model files are read with ``weights_only=True``, nothing is unpickled from data, downloads only over HTTPS to
the configured hosts with a size limit (the transfer itself is in tests/realdata/test_download.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from galmap.core.config import ConfigError, load_yaml
from galmap.core.ids import is_safe_id, sanitize_id
from galmap.data.download import DownloadSettings, check_url, item_path
from galmap.nn.training import load_weights, save_weights
from tests.conftest import REPO

CODE = [p for d in ("src", "scripts", "workflow", "benchmarks", "tests") for p in (REPO / d).rglob("*")
        if p.suffix in (".py", ".smk") or p.name == "Snakefile"] + [REPO / "Snakefile"]  # fmt: skip
HOSTILE_IDS = [
    "../../etc/passwd", "/etc/passwd", "a/../../b", "..", ".", "...", "~root", "a\\..\\b", "C:\\Windows",
    "nul\x00byte", " spaced  name ", "J1234+5678", "ümlaut/../x", ".hidden", "-rf", "a" * 300,
]  # fmt: skip


@pytest.mark.parametrize("raw", HOSTILE_IDS)
def test_an_id_never_leaves_its_folder(raw, tmp_path):
    """Sanitised ids are path-safe (or refused); as file names they stay inside the folder."""
    try:
        gid = sanitize_id(raw)
    except ValueError as exc:
        assert "no usable characters" in str(exc)
        return
    assert is_safe_id(gid) and "/" not in gid and not gid.startswith(".")
    assert (tmp_path / f"{gid}.fits").resolve().parent == tmp_path.resolve()
    path = item_path(tmp_path, raw, ".fits")
    assert path.resolve().parent == tmp_path.resolve()


def test_yaml_is_only_loaded_with_safe_load(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("seed: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(ConfigError):
        load_yaml(evil)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    unsafe = re.compile(r"yaml\.(unsafe_load|full_load|load_all|load)\(|Loader\s*=\s*yaml\.(Unsafe|Full)?Loader")
    offenders = [f"{p}:{i}" for p in CODE for i, line in enumerate(p.read_text().splitlines(), 1)
                 if unsafe.search(line) and "unsafe = re.compile" not in line]  # fmt: skip
    assert not offenders, offenders


def test_model_files_are_read_with_weights_only(tmp_path):
    """A model file holding a pickled object (code on load) is refused; every torch.load says weights_only=True."""
    save_weights(tmp_path / "ok.pt", {"w": torch.ones(2), "meta": {"k": 1}})
    assert torch.equal(load_weights(tmp_path / "ok.pt")["w"], torch.ones(2))
    torch.save({"w": torch.ones(2), "payload": Path("x")}, tmp_path / "evil.pt")  # an arbitrary pickled object
    with pytest.raises(OSError, match=f"cannot read model file {tmp_path / 'evil.pt'}"):
        load_weights(tmp_path / "evil.pt")
    calls = [(p, line) for p in CODE if p.name != "test_security.py" for line in p.read_text().splitlines()
             if "torch.load(" in line]  # fmt: skip
    assert calls
    offenders = [f"{p}: {line.strip()}" for p, line in calls if "weights_only=True" not in line]
    assert not offenders, offenders


def test_nothing_is_unpickled_from_data():
    pattern = re.compile(r"\bimport pickle\b|pickle\.loads?\(|joblib\.load\(|read_pickle\(|allow_pickle\s*=\s*True")
    offenders = [f"{p}:{i}" for p in CODE if p.name != "test_security.py"
                 for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]  # fmt: skip
    assert not offenders, offenders


URLS = {
    "https_allowed_host": ("https://www.legacysurvey.org/viewer/fits-cutout?ra=1&dec=2", None),
    "http": ("http://www.legacysurvey.org/viewer/fits-cutout", "HTTPS only"),
    "ftp": ("ftp://www.legacysurvey.org/x.fits", "HTTPS only"),
    "file": ("file:///etc/passwd", "HTTPS only"),
    "no_scheme": ("www.legacysurvey.org/x", "HTTPS only"),
    "other_host": ("https://evil.example.com/x.fits", "not among the configured hosts"),
    "lookalike_host": ("https://www.legacysurvey.org.evil.com/x", "not among the configured hosts"),
    "userinfo_trick": ("https://www.legacysurvey.org@evil.com/x", "not among the configured hosts"),
}


@pytest.mark.parametrize("kind", list(URLS))
def test_downloads_only_over_https_to_the_configured_hosts(kind):
    url, refusal = URLS[kind]
    settings = DownloadSettings(allowed_hosts=frozenset({"www.legacysurvey.org"}))
    if refusal is None:
        check_url(url, settings)
    else:
        with pytest.raises(ValueError, match=refusal):
            check_url(url, settings)


def test_downloads_have_a_size_limit():
    assert 0 < DownloadSettings().max_bytes <= 2**30
