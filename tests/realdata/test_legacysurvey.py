"""``data.source: legacysurvey`` against an imitation of Zenodo and the Legacy Survey cutout service on 127.0.0.1.

The imitation serves the Galaxy Zoo catalog made from the mock's votes (Zenodo's
records API with an md5 checksum) and FITS cutouts of the mock's rendered stamps
(the service's one-HDU-per-band layout with inverse variance), looked up by the
request's ra, dec, layer, bands, pixscale and size; it can be told to fail.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler

import numpy as np
import pandas as pd
import pytest
import yaml

from galmap.core.failures import FailureLog
from galmap.core.galaxyzoo import QUESTIONS, classes_from_votes
from galmap.core.io import read_shard
from galmap.data.archives import (
    ServiceError,
    fetch_euclid_cutouts,
    fetch_manga_maps,
    fetch_manga_shard,
    fetch_zenodo_file,
    gz_catalog_labels,
    legacysurvey_cutout_url,
    manga_maps_url,
    manga_preimage_url,
    read_manga_halpha,
    select_galaxies,
    zenodo_file,
)
from galmap.data.cutouts import CutoutError, cutout_hdulist, read_cutout
from galmap.data.download import DownloadSettings
from tests.conftest import REPO, SHARED_DATA
from tests.loopback import LoopbackServer

LAYERS = {"decals": "ls-dr10", "bass": "ls-dr9-north", "mzls": "ls-dr9-north"}
WITH_EUCLID = LAYERS | {"euclid": "euclid-q1"}
RECORD = 4573248
CATALOG = "gz_decals_volunteers_5.csv"


class LegacySurveyImitation(LoopbackServer):
    """``/api/records/<n>``, ``/files/<name>`` (Zenodo) and ``/viewer/fits-cutout`` (the cutout service).

    ``fail`` maps a galaxy id to ``"error"`` (always HTTP 500) or ``"html"`` (an HTML
    page with status 200); ``bad_checksum`` makes the record list a wrong md5.
    """

    def __init__(self, csv: bytes, cutouts: dict[tuple[str, str], bytes], positions: dict[str, str]) -> None:
        self.csv, self.cutouts, self.positions = csv, cutouts, positions
        self.fail: dict[str, str] = {}
        self.outside_euclid: set[str] = set()
        self.manga: dict[str, bytes] = {}
        self.bad_checksum = False
        self.hits: list[str] = []
        self.lock = threading.Lock()
        svc = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 - http.server API
                url = urllib.parse.urlsplit(self.path)
                with svc.lock:
                    svc.hits.append(self.path)
                if url.path == f"/api/records/{RECORD}":
                    md5 = "0" * 32 if svc.bad_checksum else hashlib.md5(svc.csv).hexdigest()
                    record = {"id": RECORD, "files": [
                        {"key": "schema.md", "checksum": "md5:" + "1" * 32, "links": {"self": f"{svc.url}/files/x"}},
                        {"key": CATALOG, "checksum": f"md5:{md5}", "size": len(svc.csv),
                         "links": {"self": f"{svc.url}/files/{CATALOG}"}},
                    ]}  # fmt: skip
                    return self._send(200, json.dumps(record).encode(), "application/json")
                if url.path == f"/files/{CATALOG}":
                    return self._send(200, svc.csv, "text/csv")
                q = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
                if url.path == "/SIA":  # IRSA SIA v2: the VIS tile covering the position, or nothing
                    _, ra, dec, _ = q["POS"].split()
                    gid = svc.positions.get(f"{ra},{dec}")
                    inside = gid is not None and gid not in svc.outside_euclid
                    return self._send(200, _sia_votable(f"{svc.url}/ibe/data/euclid/q1/MER/1/VIS/tile.fits" if inside
                                                        else None), "text/xml")  # fmt: skip
                if url.path == "/ibe/data/euclid/q1/MER/1/VIS/tile.fits":  # IBE cutout of the tile
                    ra, dec = q["center"].removesuffix("deg").split(",")
                    gid = svc.positions.get(f"{ra},{dec}")
                    key = (gid, f"ibe/{q['size']}")
                    if key not in svc.cutouts or q.get("gzip") != "false":
                        return self._send(400, b"bad cutout request", "text/plain")
                    return self._send(200, svc.cutouts[key], "application/fits")
                if url.path.startswith(("/manga/", "/mangapreim/")):  # DAP MAPS and preimaging, by file name
                    body = svc.manga.get(url.path.rsplit("/", 1)[-1])
                    return self._send(200, body, "application/gzip") if body else self._send(404, b"", "text/plain")
                if url.path != "/viewer/fits-cutout":
                    return self._send(404, b"not found", "text/plain")
                gid = svc.positions.get(f"{q.get('ra')},{q.get('dec')}")
                key = (gid, f"{q.get('layer')}/{q.get('bands')}/{q.get('pixscale')}/{q.get('size')}")
                if gid is None or key not in svc.cutouts or "invvar" not in q:
                    return self._send(404, b"no such cutout", "text/plain")
                if svc.fail.get(gid) == "error":
                    return self._send(500, b"internal error", "text/plain")
                if svc.fail.get(gid) == "html":
                    return self._send(200, b"<!DOCTYPE html><html>busy</html>", "text/html")
                return self._send(200, svc.cutouts[key], "application/fits")

            def _send(self, code: int, body: bytes, ctype: str):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)


def _sia_votable(access_url: str | None) -> bytes:
    """An SIA v2 answer: the science VIS mosaic (and a non-science row) at ``access_url``, or no rows."""
    from astropy.io.votable import from_table
    from astropy.table import Table

    rows = [("science", "VIS", access_url or ""), ("noise", "VIS", "x"), ("science", "Y", "y")] if access_url else []
    names = ["dataproduct_subtype", "energy_bandpassname", "access_url"]
    table = Table(rows=rows, names=names, dtype=[str, str, str]) if rows else Table(names=names, dtype=[str] * 3)
    buf = io.BytesIO()
    from_table(table).to_xml(buf)
    return buf.getvalue()


def _gz_csv(truth: pd.DataFrame, labels: pd.DataFrame) -> bytes:
    """The mock's votes as a Galaxy Zoo DECaLS catalog: ``iauname, ra, dec`` and the vote columns."""
    votes = labels.drop(columns=[c for c in labels.columns if c.endswith("_class")] + ["ra", "dec"], errors="ignore")
    cat = votes.rename(columns={"id": "iauname"})
    cat.insert(1, "ra", truth["ra"].to_numpy())
    cat.insert(2, "dec", truth["dec"].to_numpy())
    return cat.to_csv(index=False).encode()


@pytest.fixture(scope="module")
def mock_labels(test_config, truth, surveys):
    from galmap.mock.population import true_answers
    from galmap.mock.volunteers import make_labels

    full = pd.concat([truth, true_answers(truth)], axis=1)
    vol = test_config["mock"]["volunteers"]
    return make_labels(full, surveys[vol["label_survey"]], test_config["seed"], vol["votes_mean"])


@pytest.fixture(scope="module")
def imitation(test_config, truth, rendered, mock_labels):
    cutouts, positions = {}, {}
    for gid, ra, dec in zip(truth["id"], truth["ra"], truth["dec"], strict=True):
        positions[f"{ra:.7f},{dec:.7f}"] = gid
    for name, layer in LAYERS.items():
        shard, sv = rendered[name], test_config["surveys"][name]
        for i, gid in enumerate(shard.ids):
            buf = io.BytesIO()
            cutout_hdulist(shard.images[i], shard.bands, sv["pixscale_arcsec"], shard.ivar[i], layout="hdus").writeto(
                buf
            )
            key = f"{layer}/{''.join(sv['bands'])}/{sv['pixscale_arcsec']:g}/{sv['stamp_px']}"
            cutouts[(str(gid), key)] = buf.getvalue()
    from astropy.io import fits

    eu, sv = rendered["euclid"], test_config["surveys"]["euclid"]
    for i, gid in enumerate(eu.ids):  # IBE cutouts: one image HDU with its WCS, no band keyword, no ivar
        hdu = cutout_hdulist(eu.images[i], ["VIS"], sv["pixscale_arcsec"], layout="hdus")[1]
        del hdu.header["BAND"], hdu.header["IMAGETYP"]
        buf = io.BytesIO()
        fits.HDUList([fits.PrimaryHDU(hdu.data, hdu.header)]).writeto(buf)
        cutouts[(str(gid), f"ibe/{sv['stamp_px']}pix")] = buf.getvalue()
    svc = LegacySurveyImitation(_gz_csv(truth, mock_labels), cutouts, positions)
    yield svc
    svc.close()


MAPS_SAMPLE = SHARED_DATA / "manga_halpha_maps" / "manga-7815-3702-MAPS-HYB10-GAU-MILESHC.fits.gz"
DAPTYPE = "HYB10-MILESHC-MASTARSSP"


def _gz(hdul) -> bytes:
    import gzip

    buf = io.BytesIO()
    hdul.writeto(buf, checksum=True)  # the archive's files carry CHECKSUM/DATASUM; the fetch verifies them
    return gzip.compress(buf.getvalue())


def _tan_header(ra: float, dec: float, n: int, scale_arcsec: float):
    """A north-up, east-left TAN WCS of ``n`` x ``n`` pixels centred on (ra, dec)."""
    from astropy.io import fits

    h = fits.Header()
    h.update(CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRVAL1=ra, CRVAL2=dec, CRPIX1=(n + 1) / 2, CRPIX2=(n + 1) / 2,
             CD1_1=-scale_arcsec / 3600, CD1_2=0.0, CD2_1=0.0, CD2_2=scale_arcsec / 3600)  # fmt: skip
    return h


def manga_maps_bytes(ha, ha_ivar, ra, dec, plateifu, mangaid, designid, scale_in=0.396, spaxel=0.5) -> bytes:
    """A MAPS-like file as the DAP writes it (the real sample's layout, three channels): ``ha`` per spaxel."""
    from astropy.io import fits

    from galmap.core.resample import resample_stamps

    n = int(round(ha.shape[-1] * scale_in / spaxel))
    flux, ivar = resample_stamps(ha[None, None], ha_ivar[None, None], scale_in, n, spaxel)
    cube = np.zeros((3, n, n), np.float32)
    cube[1] = flux[0, 0]
    icube = np.ones_like(cube)
    icube[1] = ivar[0, 0]
    mask = np.zeros(cube.shape, np.int32)
    mask[1] = (ivar[0, 0] <= 0).astype(np.int32) << 30  # the DAP's DONOTUSE bit
    primary = fits.PrimaryHDU()
    primary.header.update(PLATEIFU=plateifu, MANGAID=mangaid, DESIGNID=designid, OBJRA=ra, OBJDEC=dec,
                          DAPTYPE=DAPTYPE)  # fmt: skip
    hdus = [primary]
    for name, data in (("EMLINE_GFLUX", cube), ("EMLINE_GFLUX_IVAR", icube), ("EMLINE_GFLUX_MASK", mask)):
        h = _tan_header(ra, dec, n, spaxel)
        h.update(C01="Hb-4862", C02="Ha-6564", C03="NII-6585", BUNIT="1E-17 erg/s/cm^2/spaxel")
        hdus.append(fits.ImageHDU(data, h, name=name))
    return _gz(fits.HDUList(hdus))


def preimage_bytes(images, ivar, bands, ra, dec, scale=0.396, flip_x=False) -> bytes:
    """A MaNGA preimaging file: ``'<band> img'`` (nanomaggies) and ``'<band> ivar'`` HDUs with a TAN WCS."""
    from astropy.io import fits

    if flip_x:  # east to the right, as some images are stored
        images, ivar = images[..., ::-1], ivar[..., ::-1]
    hdus = [fits.PrimaryHDU()]
    for b, band in enumerate(bands):
        h = _tan_header(ra, dec, images.shape[-1], scale)
        h.update(CD1_1=-h["CD1_1"] if flip_x else h["CD1_1"], BUNIT="nanomaggy")
        hdus.append(fits.ImageHDU(images[b], h, name=f"{band} img"))
        hdus.append(fits.ImageHDU(ivar[b], h, name=f"{band} ivar"))
    return _gz(fits.HDUList(hdus))


@pytest.fixture(scope="module")
def manga_files(rendered, truth, test_config):
    """14 MaNGA galaxies made from the mock's first 14 (sdss, halpha): plate-IFU -> (file name -> bytes)."""
    files, plateifus = {}, []
    bands = test_config["surveys"]["sdss"]["bands"]
    for i in range(14):
        plateifu, mangaid, designid = f"{9000 + i}-1901", f"1-{500 + i}", 12345
        ra, dec = float(truth["ra"].iloc[i]), float(truth["dec"].iloc[i])
        files[f"manga-{plateifu.replace('-', '-')}-MAPS-{DAPTYPE}.fits.gz"] = manga_maps_bytes(
            rendered["halpha"].images[i, 0], rendered["halpha"].ivar[i, 0], ra, dec, plateifu, mangaid, designid
        )
        files[f"preimage-{mangaid}.fits.gz"] = preimage_bytes(
            rendered["sdss"].images[i], rendered["sdss"].ivar[i], bands, ra, dec
        )
        plateifus.append(plateifu)
    return plateifus, files


FAST = DownloadSettings(service="Zenodo", retries=1, backoff_s=0.01, backoff_max_s=0.02, timeout_s=5, rate_per_s=0)


# --------------------------------------------------------------------------- units
def test_the_real_gz_decals_catalog_rows_become_labels_with_the_mocks_columns(mock_labels):
    real = pd.read_csv(SHARED_DATA / "gz_decals_catalog_rows" / "gz_decals_volunteers_5.csv")
    labels, problems = gz_catalog_labels(real)
    assert not problems and len(labels) == len(real)
    assert set(mock_labels.columns) <= set(labels.columns)  # the same schema as the mock's labels
    assert labels["id"].str.match(r"^[A-Za-z0-9_.-]+$").all()  # J123456.78+012345.6 -> path-safe
    expected = classes_from_votes(real)
    for q in QUESTIONS:
        assert np.array_equal(labels[q.class_col].to_numpy(), expected[q.class_col].to_numpy())
    assert labels[QUESTIONS[0].class_col].ge(0).any()


def test_catalog_problems_are_reported_and_a_missing_column_is_named(mock_labels, truth):
    cat = pd.read_csv(io.BytesIO(_gz_csv(truth, mock_labels)))
    cat.loc[1, "iauname"] = cat.loc[0, "iauname"]
    cat.loc[2, "ra"] = np.nan
    labels, problems = gz_catalog_labels(cat)
    assert len(labels) == len(cat) - 2
    reasons = dict(problems)
    assert "repeats" in reasons[cat.loc[0, "iauname"]] and "ra/dec" in reasons[cat.loc[2, "iauname"]]
    with pytest.raises(ServiceError, match="bar_total-votes"):
        gz_catalog_labels(cat.drop(columns=["bar_total-votes"]))


def test_selection_by_ids_first_or_seeded_random(mock_labels):
    first, _ = select_galaxies(mock_labels, {"n": 5, "order": "first"}, 1)
    assert list(first["id"]) == sorted(mock_labels["id"])[:5]
    a, _ = select_galaxies(mock_labels, {"n": 5, "order": "random"}, 1)
    b, _ = select_galaxies(mock_labels.sample(frac=1, random_state=3), {"n": 5, "order": "random"}, 1)
    assert list(a["id"]) == list(b["id"])  # the seed, not the row order, decides
    ids = [mock_labels["id"].iloc[3], "J000000.00+000000.0"]
    chosen, missing = select_galaxies(mock_labels, {"n": 1, "ids": ids}, 1)
    assert list(chosen["id"]) == [ids[0]] and missing == [("J000000.00_000000.0", "not in the Galaxy Zoo catalog")]


def test_service_urls_follow_each_services_api():
    url = legacysurvey_cutout_url("https://www.legacysurvey.org/viewer/fits-cutout", 150.1, 2.2, "ls-dr10",
                                  ["g", "r", "z"], 0.262, 64)  # fmt: skip
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query, keep_blank_values=True))
    assert url.startswith("https://www.legacysurvey.org/viewer/fits-cutout?") and url.endswith("&invvar")
    assert q == {"ra": "150.1000000", "dec": "2.2000000", "layer": "ls-dr10", "pixscale": "0.262", "size": "64",
                 "bands": "grz", "invvar": ""}  # fmt: skip
    assert manga_maps_url("7815-3702").endswith(
        "/HYB10-MILESHC-MASTARSSP/7815/3702/manga-7815-3702-MAPS-HYB10-MILESHC-MASTARSSP.fits.gz"
    )
    with pytest.raises(ValueError, match="plate-IFU"):
        manga_maps_url("../../x")
    new_style = {"files": {"entries": {CATALOG: {"key": CATALOG, "checksum": "md5:" + "a" * 32,
                                                 "links": {"content": "https://zenodo.org/x/content"}}}}}  # fmt: skip
    assert zenodo_file(new_style, CATALOG) == ("https://zenodo.org/x/content", "a" * 32)
    with pytest.raises(ServiceError, match="no file 'other.csv'"):
        zenodo_file(new_style, "other.csv")


def test_the_real_manga_maps_give_an_halpha_map():
    flux, ivar, scale = read_manga_halpha(
        SHARED_DATA / "manga_halpha_maps" / "manga-7815-3702-MAPS-HYB10-GAU-MILESHC.fits.gz"
    )
    assert flux.shape == ivar.shape == (42, 42) and scale == pytest.approx(0.5, rel=1e-3)
    assert (ivar > 0).mean() > 0.2 and flux[ivar > 0].max() > 1 and (ivar[ivar > 0] > 0).all()


def test_zenodo_catalog_is_checksum_verified_and_kept(imitation, tmp_path):
    cfg = {"api": f"{imitation.url}/api/records", "record": RECORD, "file": CATALOG, "md5": None}
    path = fetch_zenodo_file(cfg, tmp_path, FAST)
    assert path.read_bytes() == imitation.csv
    n = len(imitation.hits)
    assert fetch_zenodo_file(cfg, tmp_path, FAST) == path
    assert all(h.startswith("/api/") for h in imitation.hits[n:])  # the catalog is not fetched again
    with pytest.raises(ServiceError, match="not the pinned"):
        fetch_zenodo_file(cfg | {"md5": "f" * 32}, tmp_path, FAST)
    imitation.bad_checksum = True
    try:
        with pytest.raises(ServiceError, match=r"md5 [0-9a-f]{32} is not the record's 0{32}"):
            fetch_zenodo_file(cfg, tmp_path / "other", FAST)
        assert not (tmp_path / "other" / CATALOG).exists()  # nothing unverified under the final name
    finally:
        imitation.bad_checksum = False
    with pytest.raises(ServiceError, match="Zenodo: cannot read record"):
        fetch_zenodo_file(cfg | {"api": f"{imitation.url}/nothing"}, tmp_path / "x", FAST)


def test_euclid_cutouts_come_from_the_tile_found_by_sia_and_outside_the_footprint_is_a_reason(
    imitation, rendered, test_config, truth, tmp_path
):
    rows = truth[["id", "ra", "dec"]].iloc[:6]
    imitation.outside_euclid = {rows["id"].iloc[2]}
    try:
        settings = DownloadSettings(service="Euclid", retries=0, rate_per_s=0, timeout_s=5)
        table = fetch_euclid_cutouts(rows, test_config["surveys"]["euclid"], tmp_path, settings, f"{imitation.url}/SIA")
    finally:
        imitation.outside_euclid = set()
    assert list(table["id"]) == list(rows["id"])
    assert list(table["status"]) == ["fetched"] * 2 + ["failed"] + ["fetched"] * 3
    assert "not in the Euclid Q1 footprint" in table["reason"][2]
    assert all("center=" in u and "pix&gzip=false" in u for u in table.loc[table["status"] == "fetched", "url"])
    cut = read_cutout(table["path"][0], ["VIS"], single_band="VIS")  # IBE cutouts carry no band keyword
    assert np.array_equal(cut.images[0], rendered["euclid"].images[0, 0]) and cut.ivar is None
    with pytest.raises(CutoutError, match="keyword BAND or FILTER"):
        read_cutout(table["path"][0], ["VIS"])  # without being told, a band-less image is an error


def test_manga_maps_are_fetched_and_checked_for_an_halpha_map(imitation, tmp_path):
    sample = SHARED_DATA / "manga_halpha_maps" / "manga-7815-3702-MAPS-HYB10-GAU-MILESHC.fits.gz"
    imitation.manga = {
        "manga-7815-3702-MAPS-HYB10-MILESHC-MASTARSSP.fits.gz": sample.read_bytes(),
        "manga-7815-1901-MAPS-HYB10-MILESHC-MASTARSSP.fits.gz": b"\x1f\x8b not really gzip",
    }
    settings = DownloadSettings(service="MaNGA", retries=0, rate_per_s=0, timeout_s=5)
    table = fetch_manga_maps(["7815-3702", "7815-1901", "7815-6101"], tmp_path, settings, f"{imitation.url}/manga")
    assert list(table["status"]) == ["fetched", "failed", "failed"]
    assert "Ha-6564" in table["reason"][1] and "HTTP 404" in table["reason"][2]
    flux, _, _ = read_manga_halpha(table["path"][0])
    assert flux.shape == (42, 42)


def test_manga_urls_follow_the_dr17_archive_layout():
    assert manga_preimage_url("1-42007", 8405) == (
        "https://svn.sdss.org/public/data/manga/mangapreim/tags/v2_9/data/D0084XX/8405/preimage-1-42007.fits.gz"
    )
    assert manga_maps_url("10001-12701", "https://x.org/a/").startswith(
        "https://x.org/a/HYB10-MILESHC-MASTARSSP/10001/"
    )
    with pytest.raises(ValueError, match="MaNGA id"):
        manga_preimage_url("../../etc", 8405)


def test_manga_plateifus_are_their_own_sample_and_enable_the_halpha_stage(test_config):
    import copy

    from galmap.core.config import ConfigError, check_references
    from galmap.data.plan import source_surveys, stage_plan, survey_shards

    cfg = copy.deepcopy(test_config)
    cfg["data"]["source"] = "legacysurvey"
    cfg["data"]["legacysurvey"] = {"layers": {"decals": "ls-dr10"}, "selection": {"n": 24}}
    assert "not in the data" in stage_plan(cfg)["halpha"]
    cfg["data"]["manga"] = {"plateifus": ["7815-3702", "7815-1901"], "ugriz_survey": "sdss", "halpha_survey": "halpha"}
    assert source_surveys(cfg) == ["decals", "sdss", "halpha"] and stage_plan(cfg)["halpha"] is None
    assert survey_shards(cfg, "halpha") == ["0000"] and survey_shards(cfg, "decals") == ["0000", "0001"]
    check_references(cfg)
    cfg["data"]["legacysurvey"]["layers"]["sdss"] = "ls-dr10"
    with pytest.raises(ConfigError, match="one source"):
        check_references(cfg)


def test_the_real_manga_maps_go_onto_the_halpha_grid_flux_conserved():
    from galmap.data.manga import ingest_manga, maps_meta, read_halpha_map

    meta = maps_meta(MAPS_SAMPLE)
    assert (meta["mangaid"], meta["designid"]) == ("1-113540", 8192)
    rows = pd.DataFrame({"id": ["7815-3702"], "file": [str(MAPS_SAMPLE)], "ra": [meta["ra"]], "dec": [meta["dec"]]})
    failures = FailureLog("data")
    shard = ingest_manga(rows, "halpha", "halpha", ["Ha"], 42, 0.396, [2.5], failures)
    assert len(failures) == 0 and shard.attrs["units"] == ["1e-17 erg/s/cm^2"] and shard.images.shape == (1, 1, 42, 42)
    img, iv = shard.images[0, 0], shard.ivar[0, 0]
    assert 0.4 < (iv > 0).mean() < 0.9  # the hexagonal IFU covers part of the 16.6" stamp
    peak = np.unravel_index(np.argmax(np.where(iv > 0, img, -np.inf)), img.shape)
    assert max(abs(peak[0] - 20.5), abs(peak[1] - 20.5)) < 4  # the galaxy sits at the stamp centre
    sky = read_halpha_map(MAPS_SAMPLE)  # flux per spaxel -> per pixel: the total over the same area is kept
    x0, y0 = sky.pixel_of(meta["ra"], meta["dec"])
    yy, xx = np.mgrid[: sky.planes.shape[1], : sky.planes.shape[2]]
    half = 20 * 0.396 / 0.5  # the inner 40 pixels of the stamp, in spaxels (clear of the resampling edge)
    inner = (np.abs(xx - x0) < half) & (np.abs(yy - y0) < half) & (sky.ivar[0] > 0)
    assert img[1:41, 1:41][iv[1:41, 1:41] > 0].sum() == pytest.approx(sky.planes[0][inner].sum(), rel=0.1)


def test_manga_shard_fetch_maps_then_preimaging_and_ingest(
    imitation, manga_files, rendered, truth, test_config, tmp_path
):
    from galmap.data.manga import ingest_manga

    plateifus, files = manga_files
    bands = test_config["surveys"]["sdss"]["bands"]
    served = dict(files)
    served["preimage-1-501.fits.gz"] = files["preimage-1-501.fits.gz"][:-300]  # truncated
    imitation.manga = served
    cfg = {"maps_url": f"{imitation.url}/manga", "daptype": DAPTYPE, "preimaging_url": f"{imitation.url}/mangapreim"}
    settings = DownloadSettings(service="MaNGA", retries=0, rate_per_s=0, timeout_s=5)
    maps, pre = fetch_manga_shard([*plateifus[:3], "7815-6101"], bands, tmp_path, cfg, settings, settings)
    assert list(maps["status"]) == ["fetched"] * 3 + ["failed"] and "HTTP 404" in maps["reason"][3]
    assert list(pre["status"]) == ["fetched", "failed", "fetched", "failed"]
    assert "no MAPS file" in pre["reason"][3] and pre["url"][2].endswith("/D0123XX/12345/preimage-1-502.fits.gz")
    assert maps["mangaid"][0] == "1-500" and pre["ra"][2] == pytest.approx(truth["ra"].iloc[2])  # from the header
    rows = pre.assign(file=pre["path"].where(pre["status"] != "failed", "").fillna(""))
    sv = test_config["surveys"]["sdss"]
    shard = ingest_manga(rows, "ugriz", "sdss", bands, sv["stamp_px"], sv["pixscale_arcsec"], [1.4] * 5)
    inner = (slice(None), slice(3, -3), slice(3, -3))  # the same grid: the served stamps come back (edges need margin)
    for i in (0, 2):
        assert np.allclose(shard.images[i][inner], rendered["sdss"].images[i][inner], atol=1e-4)
    assert (shard.ivar[[1, 3]] == 0).all()
    flipped = tmp_path / "flipped.fits.gz"  # an image stored east-right reads the same
    flipped.write_bytes(preimage_bytes(rendered["sdss"].images[0], rendered["sdss"].ivar[0], bands,
                                       float(pre["ra"][0]), float(pre["dec"][0]), flip_x=True))  # fmt: skip
    again = ingest_manga(rows.iloc[:1].assign(file=str(flipped)), "ugriz", "sdss", bands, sv["stamp_px"],
                         sv["pixscale_arcsec"], [1.4] * 5)  # fmt: skip
    assert np.allclose(again.images[0], shard.images[0], atol=1e-4)
    ha = ingest_manga(maps.assign(file=maps["path"].fillna("")).iloc[:1], "halpha", "halpha", ["Ha"], 32, 0.396,
                      [1.4])  # fmt: skip
    truth_map = rendered["halpha"].images[0, 0]
    ok = ha.ivar[0, 0] > 0
    assert ok.mean() > 0.6 and ha.images[0, 0][ok].sum() == pytest.approx(truth_map[ok].sum(), rel=0.1)


# --------------------------------------------------------------------------- the workflow
def _snakemake(args, cwd):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_the_workflow_fetches_ingests_and_resumes(imitation, rendered, mock_labels, test_config, tmp_path):
    cfg = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    cfg["data"] = {"source": "legacysurvey", "legacysurvey": {
        "catalog": {"api": f"{imitation.url}/api/records", "record": RECORD, "file": CATALOG},
        "selection": {"n": test_config["mock"]["n_galaxies"], "order": "first"},
        "cutout_url": f"{imitation.url}/viewer/fits-cutout", "layers": WITH_EUCLID, "hosts": [],
        "euclid_sia": f"{imitation.url}/SIA",
        "download": {"connections": 4, "rate_per_s": 100, "retries": 1, "backoff_s": 0.01, "timeout_s": 5},
    }}  # fmt: skip
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    ids = [str(g) for g in rendered["decals"].ids]
    imitation.fail = {ids[3]: "error", ids[14]: "html"}
    targets = ["data_failures", "preprocess_failures", "--configfile", "config.yaml", "--cores", "2"]
    try:
        proc = _snakemake(targets, tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        dry = _snakemake(["-n", "--configfile", "config.yaml"], tmp_path)  # the rest of the DAG builds
        assert dry.returncode == 0 and "domain_dann" in dry.stdout and "vae_train" in dry.stdout, dry.stderr[-2000:]
        # configured, but no service gives it: no job reads or writes it (the halpha stage says why it is skipped)
        assert not [line for line in dry.stdout.splitlines() if "halpha" in line and "skipped" not in line]
        labels = pd.read_parquet(tmp_path / "results/catalog/labels.parquet")
        for q in QUESTIONS:  # the catalog went through the mock's class rules
            assert np.array_equal(labels[q.class_col].to_numpy(), mock_labels[q.class_col].to_numpy())
        failures = pd.read_csv(tmp_path / "results/data/failures.csv")
        assert sorted(failures["id"]) == sorted([ids[3], ids[14]] * len(LAYERS))  # once per survey
        reason = failures.set_index(["id", failures["reason"].str.split(":").str[0]])["reason"]
        assert "HTTP 500" in reason[(ids[3], "decals")] and "HTML page" in reason[(ids[14], "mzls")]
        assert "layer=ls-dr9-north" in reason[(ids[3], "bass")]
        assert "--forcerun legacysurvey_download" in reason[(ids[3], "decals")]
        for name in LAYERS:  # every galaxy keeps its row; the fetched ones are the served stamps, bit for bit
            got = [read_shard(tmp_path / f"data/legacysurvey/{name}/shard-{s:04d}.h5") for s in (0, 1)]
            gids = [str(g) for sh in got for g in sh.ids]
            images = np.concatenate([sh.images for sh in got])
            ivar = np.concatenate([sh.ivar for sh in got])
            assert gids == ids
            ok = [i for i, g in enumerate(ids) if g not in (ids[3], ids[14])]
            assert np.array_equal(images[ok], rendered[name].images[ok])
            assert np.array_equal(ivar[ok], np.where(rendered[name].ivar[ok] > 0, rendered[name].ivar[ok], 0))
            assert (ivar[[3, 14]] == 0).all()
        euclid = [read_shard(tmp_path / f"data/legacysurvey/euclid/shard-{s:04d}.h5") for s in (0, 1)]
        assert np.array_equal(np.concatenate([sh.images for sh in euclid]), rendered["euclid"].images)
        assert all(sh.extra["ivar_estimated"].all() for sh in euclid)  # IBE cutouts have no ivar: estimated
        # a second run fetches nothing; after the service recovers, a rerun fetches only what was missing
        n = len(imitation.hits)
        again = _snakemake([*targets, "-q"], tmp_path)
        assert again.returncode == 0 and len(imitation.hits) == n
        imitation.fail = {}
        retry = _snakemake([*targets, "-q", "--forcerun", "legacysurvey_download"], tmp_path)  # the retry it names
        assert retry.returncode == 0, retry.stderr[-3000:]
        cutout_hits = [h for h in imitation.hits[n:] if h.startswith("/viewer/")]
        assert len(cutout_hits) == 2 * len(LAYERS)  # the missing cutouts only; the rest were present and verified
        assert len(pd.read_csv(tmp_path / "results/data/failures.csv")) == 0
    finally:
        imitation.fail = {}


@pytest.mark.slow
def test_the_workflow_runs_the_halpha_stage_on_manga_data(imitation, manga_files, rendered, test_config, tmp_path):
    plateifus, files = manga_files
    served = {k: v for k, v in files.items() if k != "preimage-1-503.fits.gz"}  # 404: no preimaging
    served[f"manga-{plateifus[5]}-MAPS-{DAPTYPE}.fits.gz"] = b"\x1f\x8b not really gzip"  # corrupt MAPS
    imitation.manga = served
    cfg = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    cfg["data"] = {
        "source": "legacysurvey",
        "legacysurvey": {
            "catalog": {"api": f"{imitation.url}/api/records", "record": RECORD, "file": CATALOG},
            "selection": {"n": test_config["mock"]["n_galaxies"], "order": "first"},
            "cutout_url": f"{imitation.url}/viewer/fits-cutout", "layers": {"decals": "ls-dr10"}, "hosts": [],
            "download": {"connections": 4, "rate_per_s": 100, "retries": 0, "backoff_s": 0.01, "timeout_s": 5},
        },
        "manga": {"plateifus": plateifus, "maps_url": f"{imitation.url}/manga",
                  "preimaging_url": f"{imitation.url}/mangapreim"},
    }  # fmt: skip
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    targets = ["results/halpha/metrics.csv", "data_failures", "--configfile", "config.yaml", "--cores", "2"]
    proc = _snakemake(targets, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the MaNGA sample has its own shards (14 galaxies, 12 per shard), the Galaxy Zoo sample its own
    for survey in ("sdss", "halpha"):
        got = [read_shard(tmp_path / f"data/legacysurvey/{survey}/shard-{s:04d}.h5") for s in (0, 1)]
        assert [str(g) for sh in got for g in sh.ids] == plateifus
    sdss = read_shard(tmp_path / "data/legacysurvey/sdss/shard-0000.h5")
    assert np.allclose(sdss.images[0][:, 3:-3, 3:-3], rendered["sdss"].images[0][:, 3:-3, 3:-3], atol=1e-4)
    failures = pd.read_csv(tmp_path / "results/data/failures.csv")
    reasons = failures.groupby("id")["reason"].apply(" | ".join)
    assert set(failures["id"]) == {plateifus[3], plateifus[5]}
    assert "sdss: download" in reasons[plateifus[3]] and "HTTP 404" in reasons[plateifus[3]]
    assert "Ha-6564" in reasons[plateifus[5]] and "--forcerun manga_download" in reasons[plateifus[5]]
    metrics = pd.read_csv(tmp_path / "results/halpha/metrics.csv")
    predictions = pd.read_parquet(tmp_path / "results/halpha/predictions.parquet")
    assert metrics["n_galaxies"].iloc[0] == len(predictions) >= 2  # held-out MaNGA galaxies, no mock truth
    assert set(predictions["id"]) <= set(plateifus) - {plateifus[3], plateifus[5]}
    assert np.allclose(predictions["flux_true"], predictions["flux_observed"])  # observed Hα is the reference
