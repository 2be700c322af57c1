"""Fault injection, stage by stage: each stage's own kinds of bad input, fed to the function its rule runs.

Every case checks the three promises of the project's rule "bad input gets a clear error, nothing
lost": a specific message naming the galaxy (or file, or config key) and the cause; a row in that
stage's failures table; and the rest of the batch processed normally, with every input id present in
the output or in the failures. The tables below (``*_FAULTS``) are the suite: one parametrised case
per fault, counted per stage by ``pytest --collect-only -q tests/workflow/test_faults.py``.
Interrupted runs (kills during rendering and training) and reruns are in ``tests/workflow/test_interrupts.py``.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from galmap.core.config import ConfigError, validate_config
from galmap.core.failures import FailureLog
from galmap.core.ids import is_safe_id
from galmap.core.io import Shard, ShardError, read_shard, write_shard
from galmap.data.cutouts import cutout_hdulist
from galmap.data.ingest import ingest_cutouts, inventory
from galmap.preprocess.flags import FLAGS
from galmap.preprocess.stamps import preprocess_shard
from tests.conftest import SCHEMA

N_GOOD = 3  # good galaxies that go with every bad one: the batch must go on for them


def _take(shard: Shard, n: int) -> Shard:
    return Shard(shard.images[:n].copy(), shard.ivar[:n].copy(), shard.ids[:n].copy(), dict(shard.attrs))


def _reasons(log: FailureLog) -> dict[str, str]:
    frame = log.frame()
    assert list(frame.columns) == ["id", "stage", "reason"]
    assert (frame["stage"] == log.stage).all()
    return dict(zip(frame["id"], frame["reason"], strict=True))


# --------------------------------------------------------------------------- data: a folder of FITS cutouts
def _write_fits(path: Path, images, bands=("g", "r", "z"), pixscale=0.262, ivar=None, layout="cube") -> None:
    cutout_hdulist(np.asarray(images, np.float32), list(bands), pixscale, ivar, layout=layout).writeto(path)


def _truncated(path: Path, good: Path, keep: float) -> None:
    """The first ``keep`` of the bytes (a cut exactly between HDUs leaves a valid FITS file: not used)."""
    data = good.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _no_wcs(path: Path, good: Path) -> None:
    from astropy.io import fits

    with fits.open(good) as hdul:
        hdr = hdul[0].header.copy()
        for key in ("CTYPE1", "CTYPE2", "CD1_1", "CD1_2", "CD2_1", "CD2_2", "CDELT1", "CDELT2"):
            hdr.remove(key, ignore_missing=True)
        fits.HDUList([fits.PrimaryHDU(hdul[0].data, hdr)]).writeto(path)


def _non_square(path: Path, good: Path) -> None:
    from astropy.io import fits

    with fits.open(good) as hdul:
        hdr = hdul[0].header.copy()
        hdr["CD2_2"] = 2 * hdr["CD2_2"]
        fits.HDUList([fits.PrimaryHDU(hdul[0].data, hdr)]).writeto(path)


def _ragged(path: Path, stamp: np.ndarray) -> None:
    from astropy.io import fits

    hdus = cutout_hdulist(stamp, ["g", "r", "z"], 0.262, layout="hdus")
    last = hdus[-1]
    hdus[-1] = fits.ImageHDU(last.data[:-3, :-3], last.header)
    hdus.writeto(path)


DATA_FAULTS = {
    # kind: (writer(path, good_file, stamp), expected words of the reason)
    "truncated_fits": (lambda p, g, s: _truncated(p, g, 0.7), "cannot be read (truncated or corrupt FITS?)"),
    "truncated_last_block": (lambda p, g, s: _truncated(p, g, 0.99), "File may have been truncated"),
    "corrupt_fits": (lambda p, g, s: p.write_bytes(b"SIMPLE  =  not a FITS file" * 200), "cannot be read"),
    "empty_file": (lambda p, g, s: p.write_bytes(b""), "cannot be read"),
    "missing_band": (lambda p, g, s: _write_fits(p, s[:2], ("g", "r"), layout="hdus"), "band(s) z missing"),
    "all_nan": (lambda p, g, s: _write_fits(p, np.full_like(s, np.nan)), "no pixel with data"),
    "all_zero": (lambda p, g, s: _write_fits(p, np.zeros_like(s)), "no pixel with data"),
    "inf": (lambda p, g, s: _write_fits(p, np.full_like(s, np.inf)), "no pixel with data"),
    "bands_of_different_shapes": (lambda p, g, s: _ragged(p, s), "bands of different shapes"),
    "no_pixel_scale": (lambda p, g, s: _no_wcs(p, g), "no pixel scale"),
    "non_square_pixels": (lambda p, g, s: _non_square(p, g), "non-square pixels"),
    "negative_ivar": (
        lambda p, g, s: _write_fits(p, s, ivar=-np.ones_like(s)),
        "no pixel with data",
    ),
}


@pytest.mark.parametrize("kind", list(DATA_FAULTS))
def test_data_stage_bad_fits_file(kind, rendered, tmp_path):
    """One bad FITS file among good ones: named with its cause, kept without data; the good ones ingested."""
    shard = rendered["decals"]
    for i in range(N_GOOD):
        _write_fits(tmp_path / f"good{i}.fits", shard.images[i], ivar=shard.ivar[i])
    write, expected = DATA_FAULTS[kind]
    write(tmp_path / "bad.fits", tmp_path / "good0.fits", shard.images[N_GOOD].astype(np.float32))
    table, problems = inventory(tmp_path)
    assert not problems
    failures = FailureLog("data")
    out = ingest_cutouts(table, "decals", shard.bands, shard.images.shape[-1], 0.262, [1.45, 1.32, 1.22], failures)
    reasons = _reasons(failures)
    assert list(reasons) == ["bad"], reasons
    assert expected in reasons["bad"] and "bad.fits" in reasons["bad"], reasons["bad"]
    assert sorted(out.ids) == ["bad", "good0", "good1", "good2"]  # nobody vanishes
    bad = list(out.ids).index("bad")
    assert (out.ivar[bad] == 0).all()
    for i, gid in enumerate(out.ids):
        if gid != "bad":
            assert (out.ivar[i] > 0).mean() > 0.9 and np.isfinite(out.images[i]).all()


def test_data_stage_wrong_pixel_scale_is_resampled_not_lost(rendered, tmp_path):
    """A cutout at another pixel scale is put on the survey's grid (recorded), not failed."""
    shard = rendered["decals"]
    _write_fits(tmp_path / "coarse.fits", shard.images[0], pixscale=0.524)
    table, _ = inventory(tmp_path)
    failures = FailureLog("data")
    out = ingest_cutouts(table, "decals", shard.bands, 48, 0.262, [1.45, 1.32, 1.22], failures)
    assert len(failures) == 0 and out.images.shape == (1, 3, 48, 48)
    assert out.extra["native_pixscale_arcsec"][0] == pytest.approx(0.524)


CATALOG_FAULTS = {
    # kind: (catalog rows, expected (id, reason words) problems, ids in the table)
    "duplicate_ids": (
        {"iauname": ["good0", "good0", "good1"]},
        [("good0", "duplicate galaxy id")],
        ["good0", "good1", "good2"],
    ),
    "ids_with_slash_dotdot_space": (
        {"iauname": ["../../etc/passwd", "a/b", "has space", "good0"]},
        [("__.._etc_passwd", "no FITS file"), ("a_b", "no FITS file"), ("has_space", "no FITS file")],
        ["good0", "good1", "good2"],
    ),
    "row_without_file": ({"iauname": ["good0", "nothere"]}, [("nothere", "no FITS file")], None),
    "empty_catalog": ({"iauname": []}, [("good0", "not in the catalog")], ["good0", "good1", "good2"]),
}


@pytest.mark.parametrize("kind", list(CATALOG_FAULTS))
def test_data_stage_bad_catalog(kind, rendered, tmp_path):
    """Catalog faults: every catalog row and every file is in the table or among the named problems; ids stay safe."""
    shard = rendered["decals"]
    folder = tmp_path / "cutouts"
    folder.mkdir()
    for i in range(N_GOOD):
        _write_fits(folder / f"good{i}.fits", shard.images[i], ivar=shard.ivar[i])
    rows, expected, ids = CATALOG_FAULTS[kind]
    pd.DataFrame(rows).to_csv(tmp_path / "catalog.csv", index=False)
    table, problems = inventory(folder, tmp_path / "catalog.csv")
    reasons = {}
    for gid, reason in problems:
        reasons.setdefault(gid, []).append(reason)
    for gid, words in expected:
        assert any(words in r for r in reasons.get(gid, [])), (gid, reasons)
    if ids is not None:
        assert list(table["id"]) == ids
    assert all(is_safe_id(g) for g in [*table["id"], *reasons])
    for f in table["file"]:  # every path stays inside the folder
        assert Path(f).resolve().is_relative_to(folder.resolve())
    named = set(table["id"]) | set(reasons)
    assert {f"good{i}" for i in range(N_GOOD)} <= named


def test_data_stage_catalog_without_an_id_column_stops_with_the_columns_named(tmp_path):
    (tmp_path / "c").mkdir()
    pd.DataFrame({"name": ["x"]}).to_csv(tmp_path / "catalog.csv", index=False)
    with pytest.raises(ValueError, match=r"needs a column 'id' or 'iauname'.*\['name'\]"):
        inventory(tmp_path / "c", tmp_path / "catalog.csv")


# --------------------------------------------------------------------------- preprocess
def _set(index, band=None, what="images", value=np.nan):
    def apply(s: Shard) -> None:
        arr = getattr(s, what)
        if band is None:
            arr[index] = value
        else:
            arr[index, band] = value

    return apply


def _saturated_core(s: Shard) -> None:
    h = s.images.shape[-1] // 2
    s.images[0, :, h - 3 : h + 4, h - 3 : h + 4] = 1e30


PREPROCESS_FAULTS = {
    # kind: (fault on galaxy 0, expected words of the reason, or None if the galaxy must come through unflagged)
    "nan_stamp": (_set(0), "no valid pixel in any band"),
    "inf_stamp": (_set(0, value=np.inf), "no valid pixel in any band"),
    "all_zero_stamp": (_set(0, value=0.0), "no source detected at the stamp centre"),
    "saturated_stamp": (_set(0, value=1e30), "no source detected at the stamp centre"),
    "saturated_core": (_saturated_core, None),
    "negative_ivar": (_set(0, what="ivar", value=-1.0), "no valid pixel in any band"),
    "zero_ivar": (_set(0, what="ivar", value=0.0), "no valid pixel in any band"),
    "nan_ivar": (_set(0, what="ivar", value=np.nan), "no valid pixel in any band"),
    "missing_band": (_set(0, band=1), "band(s) r have no valid pixel"),
    "missing_band_ivar": (_set(0, band=2, what="ivar", value=0.0), "band(s) z have no valid pixel"),
}


@pytest.mark.parametrize("kind", list(PREPROCESS_FAULTS))
def test_preprocess_stage_bad_stamp(kind, rendered, test_config):
    fault, expected = PREPROCESS_FAULTS[kind]
    shard = _take(rendered["decals"], N_GOOD + 1)
    fault(shard)
    failures = FailureLog("preprocess")
    out = preprocess_shard(shard, test_config["preprocess"], failures)
    reasons = _reasons(failures)
    assert list(out.ids) == list(shard.ids)  # every galaxy keeps its row
    assert np.isfinite(out.images).all() and np.isfinite(out.ivar).all() and (out.ivar >= 0).all()
    bad = shard.ids[0]
    if expected is None:  # a saturated core: finite values with valid ivar are light, not bad pixels
        # (legacypipe hands saturated pixels over with ivar = 0: the zero_ivar cases); the core lies in the
        # galaxy's own segment and is neither masked nor flagged as bad pixels
        assert bad not in reasons
        h = shard.images.shape[-1] // 2
        assert out.extra["segmap"][0][h - 3 : h + 4, h - 3 : h + 4].all()
        assert (out.ivar[0][:, h - 3 : h + 4, h - 3 : h + 4] > 0).all()
        assert not out.extra["flags"][0] & FLAGS["bad_pixels"]
    else:
        assert expected in reasons[bad] and "decals" in reasons[bad], reasons
    assert not set(shard.ids[1:]) & set(reasons), reasons


@pytest.mark.parametrize("kind", ["truncated", "garbage", "missing_dataset"])
def test_preprocess_stage_unreadable_shard_names_the_file(kind, rendered, tmp_path, test_config):
    """A raw shard that cannot be read stops its job with the file and the cause named (ShardError)."""
    import h5py

    from galmap.preprocess.jobs import preprocess_file

    path = tmp_path / "shard-0000.h5"
    write_shard(path, _take(rendered["decals"], 2))
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    elif kind == "garbage":
        path.write_bytes(os.urandom(4096))
    else:
        with h5py.File(path, "a") as fh:
            del fh["ivar"]
    with pytest.raises(ShardError, match=str(path)) as info:
        preprocess_file(test_config["preprocess"], str(path), str(tmp_path / "out.h5"), str(tmp_path / "f.csv"))
    assert ("lacks dataset(s) ivar" if kind == "missing_dataset" else "truncated or corrupt") in str(info.value)
    assert not (tmp_path / "out.h5").exists() and not (tmp_path / "f.csv").exists()


def test_preprocess_stage_empty_shard(rendered, test_config, tmp_path):
    """An empty shard gives an empty shard and an empty failures table, not an error."""
    from galmap.preprocess.jobs import preprocess_file

    write_shard(tmp_path / "raw.h5", _take(rendered["decals"], 0))
    preprocess_file(
        test_config["preprocess"], str(tmp_path / "raw.h5"), str(tmp_path / "o.h5"), str(tmp_path / "f.csv")
    )
    assert len(read_shard(tmp_path / "o.h5")) == 0
    assert list(pd.read_csv(tmp_path / "f.csv").columns) == ["id", "stage", "reason"]


# --------------------------------------------------------------------------- structure
STRUCTURE_FAULTS = {
    # kind: (fault on the raw galaxy 0, expected words for sersic, for morphometry)
    "nan_stamp": (_set(0), "not fitted, no valid pixel", "no source in the segmentation"),
    "zero_ivar": (_set(0, what="ivar", value=0.0), "not fitted, no valid pixel", "no source in the segmentation"),
    "all_zero_stamp": (_set(0, value=0.0), "no source in the segmentation", "no source in the segmentation"),
    "missing_statmorph_band": (_set(0, band=1), None, "no valid pixel"),
}


@pytest.fixture(scope="module")
def structure_cases(rendered, test_config):
    """The preprocessed shards of STRUCTURE_FAULTS (and an empty one), with the preprocessing failures."""
    out = {}
    for kind, (fault, *_) in STRUCTURE_FAULTS.items():
        shard = _take(rendered["decals"], N_GOOD + 1)
        fault(shard)
        out[kind] = preprocess_shard(shard, test_config["preprocess"], FailureLog("preprocess"))
    out["empty"] = preprocess_shard(_take(rendered["decals"], 0), test_config["preprocess"])
    return out


@pytest.mark.parametrize("measure", ["sersic", "morphometry"])
@pytest.mark.parametrize("kind", [*STRUCTURE_FAULTS, "empty"])
def test_structure_stage_bad_galaxy(kind, measure, structure_cases, test_config, tmp_path):
    from galmap.structure.jobs import structure_file

    shard = structure_cases[kind]
    path = tmp_path / "images.h5"
    write_shard(path, shard)
    params = test_config["structure"]
    structure_file(measure, params, str(path), str(tmp_path / "t.parquet"), str(tmp_path / "f.csv"))
    table = pd.read_parquet(tmp_path / "t.parquet")
    fails = pd.read_csv(tmp_path / "f.csv", keep_default_na=False)
    assert list(fails.columns) == ["id", "stage", "reason"] and (fails["stage"] == "structure").all()
    assert set(table["id"]) == set(shard.ids)  # a row per galaxy (and band) for everyone
    if kind == "empty":
        assert len(table) == 0 and len(fails) == 0
        assert table["flag"].dtype.kind == "i"  # typed: concatenates with the other shards' tables
        return
    expected = STRUCTURE_FAULTS[kind][1 if measure == "sersic" else 2]
    reasons = dict(zip(fails["id"], fails["reason"], strict=True))
    bad = shard.ids[0]
    if expected is None:
        assert bad not in reasons
    else:
        assert expected in reasons[bad] and measure in reasons[bad], reasons
    assert not set(shard.ids[1:]) & set(reasons), reasons
    assert table.loc[table["id"] != bad, "flag"].eq(0).mean() > 0.5


def test_structure_stage_a_galaxy_no_fitter_can_fit(rendered, test_config):
    """Pure noise with a segment forced at the centre: the fit gives up or is flagged, never crashes the shard."""
    from galmap.structure.measure import fit_sersic_shard

    shard = preprocess_shard(_take(rendered["decals"], N_GOOD + 1), test_config["preprocess"])
    rng = np.random.default_rng(0)
    shard.images[0] = rng.normal(0, 1e3, shard.images[0].shape).astype(np.float32)
    shard.images[0, :, ::2, ::2] *= -1
    failures = FailureLog("structure")
    table = fit_sersic_shard(shard, test_config["structure"], failures)
    bad = table[table["id"] == shard.ids[0]]
    assert len(bad) == len(shard.bands)
    reasons = _reasons(failures)
    assert shard.ids[0] in reasons or (bad["flag"] != 0).all(), (reasons, bad)
    assert (table.loc[table["id"] != shard.ids[0], "n"].notna()).all()


# --------------------------------------------------------------------------- vae (encode)
VAE_FAULTS = {
    "zero_ivar": (_set(0, what="ivar", value=0.0), "no unmasked pixel with data"),
    "nan_stamp": (_set(0), "no unmasked pixel with data"),
}


@pytest.fixture(scope="module")
def vae_model(rendered, test_config, tmp_path_factory):
    """An (untrained) VAE for the test config's DECaLS stamps, written as the pipeline writes one."""
    import torch

    from galmap.latent.vae import ConvVAE
    from galmap.nn.training import save_model

    torch.manual_seed(0)
    model = ConvVAE(3, rendered["decals"].images.shape[-1], 2, [8, 16])
    path = tmp_path_factory.mktemp("vae") / "model.pt"
    meta = {"model": model.config(), "bands": ["g", "r", "z"], "survey": "decals", "sys_error": 0.0, "seed": 7}
    save_model(path, model, meta)
    return path


@pytest.mark.parametrize("kind", [*VAE_FAULTS, "empty"])
def test_vae_stage_bad_stamp(kind, vae_model, rendered, test_config, tmp_path):
    from galmap.latent.jobs import encode_file

    shard = _take(rendered["decals"], 0 if kind == "empty" else N_GOOD + 1)
    if kind != "empty":
        VAE_FAULTS[kind][0](shard)
    path = tmp_path / "images.h5"
    write_shard(path, preprocess_shard(shard, test_config["preprocess"]))
    params = test_config["vae"]
    encode_file(params, 7, str(vae_model), str(path), str(tmp_path / "lat.parquet"), str(tmp_path / "f.csv"))
    table = pd.read_parquet(tmp_path / "lat.parquet")
    fails = pd.read_csv(tmp_path / "f.csv", keep_default_na=False)
    assert list(table["id"]) == list(shard.ids)
    if kind == "empty":
        assert len(fails) == 0
        return
    reasons = dict(zip(fails["id"], fails["reason"], strict=True))
    assert list(reasons) == [shard.ids[0]] and VAE_FAULTS[kind][1] in reasons[shard.ids[0]]
    assert np.isfinite(table.loc[1:, "chi2_nu"]).all()


def test_vae_stage_corrupt_model_file_names_it(rendered, test_config, tmp_path):
    """A truncated model file is an error naming the file (and torch.load runs with weights_only)."""
    from galmap.latent.jobs import encode_file

    bad = tmp_path / "model.pt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    write_shard(tmp_path / "images.h5", preprocess_shard(_take(rendered["decals"], 2), test_config["preprocess"]))
    with pytest.raises(OSError, match=f"cannot read model file {bad}"):
        encode_file(test_config["vae"], 7, str(bad), str(tmp_path / "images.h5"), str(tmp_path / "l.parquet"),
                    str(tmp_path / "f.csv"))  # fmt: skip
    assert not (tmp_path / "l.parquet").exists()


# --------------------------------------------------------------------------- labels / classification
LABEL_FAULTS = {
    "no_votes": lambda labels, col: labels.__setitem__(col, 0),
    "nan_votes": lambda labels, col: labels.__setitem__(col, np.nan),
    "negative_votes": lambda labels, col: labels.__setitem__(col, -5),
}


@pytest.mark.parametrize("kind", list(LABEL_FAULTS))
def test_labels_without_votes_are_left_out_of_the_targets_only(kind, truth, test_config, surveys):
    """A galaxy without (valid) votes gets no class for any question; the others keep theirs; nothing raises."""
    from galmap.classify.targets import make_targets, target_specs
    from galmap.mock.volunteers import make_labels

    labels = make_labels(truth, surveys["decals"], test_config["seed"], test_config["mock"]["volunteers"]["votes_mean"])
    bad = labels["id"].iloc[0]
    for col in [c for c in labels.columns if c.endswith("_total-votes")]:
        rows = labels["id"] == bad
        column = labels[col].astype(float)
        tmp = pd.DataFrame({col: column})
        LABEL_FAULTS[kind](tmp, col)
        labels[col] = np.where(rows, tmp[col], column)
    params = test_config["classify"] | {"questions": test_config["classify"]["questions"]}
    targets, _ = make_targets(labels, target_specs(params["questions"]), params, 7)
    assert bad not in set(targets["id"])
    assert set(targets["id"]) == set(labels["id"]) - {bad} or len(set(targets["id"])) > len(labels) // 2


# --------------------------------------------------------------------------- config
def _with(cfg: dict, path: str, value) -> dict:
    cfg = copy.deepcopy(cfg)
    *parents, key = path.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    node[key] = value
    return cfg


CONFIG_FAULTS = {
    # kind: (key, bad value, words of the message)
    "wrong_type": ("shard_size", "twelve", "config key 'shard_size'"),
    "unknown_key": ("vae.latent_dims", 4, "unknown config key 'vae.latent_dims'"),
    "negative_latent_size": ("vae.latent_dim", -4, "config key 'vae.latent_dim'"),
    "negative_latent_scan": ("vae.latent_scan", [2, -1], "config key 'vae.latent_scan"),
    "zero_shard_size": ("shard_size", 0, "config key 'shard_size'"),
    "fraction_above_one": ("vae.val_fraction", 1.5, "config key 'vae.val_fraction'"),
    "unknown_source": ("data.source", "ftp", "config key 'data.source'"),
}


@pytest.mark.parametrize("kind", list(CONFIG_FAULTS))
def test_config_stage_bad_value_names_the_key(kind, test_config):
    from galmap.core.config import load_yaml

    key, value, words = CONFIG_FAULTS[kind]
    with pytest.raises(ConfigError) as info:
        validate_config(_with(test_config, key, value), load_yaml(SCHEMA))
    assert words in str(info.value), str(info.value)
    assert "Traceback" not in str(info.value)
