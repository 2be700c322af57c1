"""The real services behind ``data.source: legacysurvey``, all fetched with :func:`galmap.data.download.download`.

- **Zenodo** (the Galaxy Zoo DECaLS volunteer catalog, Walmsley et al. 2022,
  record 4573248): the record's JSON from the records API lists each file with
  its download link and ``md5:`` checksum; the catalog file is fetched and its
  MD5 checked against the record (and against ``md5`` when the config pins one)
  before it gets its final name. :func:`gz_catalog_labels` turns it into
  ``labels.parquet`` with the mock's columns and class rules
  (:func:`galmap.core.galaxyzoo.classes_from_votes`).
- **Legacy Survey cutout service** (``/viewer/fits-cutout``): one FITS cutout per
  galaxy and survey, ``layer`` (``ls-dr10`` for DECaLS, ``ls-dr9-north`` for
  BASS/MzLS), the survey's ``bands``, ``pixscale`` (arcsec/pixel) and ``size``
  (pixels), with ``invvar`` for the inverse-variance planes (the service's
  one-HDU-per-band layout); each file is verified (:func:`galmap.data.cutouts.verify_cutout`:
  it opens, has the bands and the shape, has data).
- **Euclid Q1** at IRSA (a survey whose ``layers`` entry is ``euclid-q1``): an SIA v2
  query per galaxy finds the VIS MER mosaic covering it, and IRSA's IBE cutout
  service cuts the stamp from it (``?center=ra,dec deg&size=N pix``); a galaxy
  outside the Q1 footprint is a recorded failure, not an error.
- **MaNGA** (``data.manga.plateifus``): per galaxy the DR17 DAP ``MAPS`` file (Hα
  among the emission-line maps) from the SDSS science archive, by plate-IFU
  (:func:`manga_maps_url`), then the MaNGA preimaging file of its plate design
  (SDSS u,g,r,i,z in nanomaggies, :func:`manga_preimage_url`), whose MaNGA id and
  design id come from the MAPS header (:func:`fetch_manga_shard`). Both are
  checked against their FITS ``CHECKSUM``/``DATASUM`` keywords and for the planes
  the pipeline reads (:mod:`galmap.data.manga`).

When a service cannot be reached the failure names the service, the URL, the
HTTP status or the cause, and says that rerunning fetches only what is missing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import urllib.parse
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from galmap.core.failures import FailureLog
from galmap.core.galaxyzoo import ALL_QUESTIONS, classes_from_votes, vote_columns
from galmap.core.ids import sanitize_id
from galmap.data.download import RESULT_COLUMNS, DownloadSettings, Item, download, item_path

log = logging.getLogger("galmap")

ZENODO = "Zenodo"
LEGACY_SURVEY = "Legacy Survey cutout service"
MANGA = "SDSS MaNGA archive"
MANGA_PREIMAGING = "SDSS MaNGA preimaging"
#: the DR17 MaNGA DAP release and the hybrid-binning MAPS type with Hα flux maps
MANGA_SAS = "https://data.sdss.org/sas/dr17/manga/spectro/analysis/v3_1_1/3.1.0"
MANGA_DAPTYPE = "HYB10-MILESHC-MASTARSSP"
#: the DR17 tag (v2_9) of the public mangapreim product: ``D<design // 100>XX/<design>/preimage-<mangaid>.fits.gz``
MANGA_PREIMAGING_URL = "https://svn.sdss.org/public/data/manga/mangapreim/tags/v2_9/data"


class ServiceError(RuntimeError):
    """A service could not give what the run needs (the message names it and how to retry)."""


def download_settings(cfg: Mapping[str, Any], service: str, seed: int = 0) -> DownloadSettings:
    """:class:`DownloadSettings` from ``data.legacysurvey.download`` and ``hosts``."""
    dl = cfg.get("download", {})
    return DownloadSettings(
        service=service,
        connections=int(dl.get("connections", 4)),
        rate_per_s=float(dl.get("rate_per_s", 5)),
        retries=int(dl.get("retries", 4)),
        backoff_s=float(dl.get("backoff_s", 1.0)),
        timeout_s=float(dl.get("timeout_s", 60)),
        max_bytes=int(float(dl.get("max_mb", 200)) * 2**20),
        allowed_hosts=frozenset(cfg.get("hosts", [])) or None,
        seed=seed,
    )


# --------------------------------------------------------------------------- Zenodo
def md5_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex MD5 of a file."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def zenodo_file(record_json: Mapping[str, Any], filename: str) -> tuple[str, str]:
    """``(download URL, md5)`` of ``filename`` in a Zenodo record's JSON (legacy and InvenioRDM forms)."""
    files = record_json.get("files") or []
    if isinstance(files, Mapping):  # InvenioRDM: {"entries": [...]} or {"entries": {key: {...}}}
        files = files.get("entries") or []
        files = list(files.values()) if isinstance(files, Mapping) else files
    names = []
    for f in files:
        key = f.get("key") or f.get("filename")
        names.append(str(key))
        if key != filename:
            continue
        links = f.get("links") or {}
        url = links.get("content") or links.get("self") or links.get("download")
        checksum = str(f.get("checksum") or "")
        if not url or not checksum.startswith("md5:"):
            raise ServiceError(f"{ZENODO}: the record lists {filename} without a download link or an md5 checksum")
        return str(url), checksum[4:]
    raise ServiceError(f"{ZENODO}: the record has no file {filename!r} (it has: {', '.join(names) or 'none'})")


def fetch_zenodo_file(
    cfg: Mapping[str, Any], folder: str | Path, settings: DownloadSettings, failures: FailureLog | None = None
) -> Path:
    """Fetch ``cfg['file']`` of Zenodo record ``cfg['record']`` into ``folder``, MD5-verified; return its path."""
    folder = Path(folder)
    record, filename = int(cfg["record"]), str(cfg["file"])
    api = str(cfg["api"]).rstrip("/")

    def valid_json(path: Path) -> str | None:
        try:
            json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            return f"not JSON: {exc}"
        return None

    meta = item_path(folder, f"zenodo-{record}", ".json")
    table = download([Item(f"zenodo-{record}", f"{api}/{record}", meta)], valid_json, settings, failures, False)
    if table["status"].iloc[0] == "failed":
        raise ServiceError(
            f"{ZENODO}: cannot read record {record} at {api}/{record}: {table['reason'].iloc[0]}; "
            "check the network and rerun (fetched files are kept)"
        )
    url, md5 = zenodo_file(json.loads(meta.read_text()), filename)
    pinned = cfg.get("md5")
    if pinned and pinned != md5:
        raise ServiceError(f"{ZENODO}: record {record} lists {filename} with md5 {md5}, not the pinned {pinned}")

    def right_checksum(path: Path) -> str | None:
        got = md5_of(path)
        return None if got == md5 else f"md5 {got} is not the record's {md5}"

    out = item_path(folder, filename, "")
    table = download([Item(filename, url, out)], right_checksum, settings, failures)
    if table["status"].iloc[0] == "failed":
        raise ServiceError(
            f"{ZENODO}: cannot fetch {filename} of record {record} ({url}): {table['reason'].iloc[0]}; rerun to resume"
        )
    return out


def gz_catalog_labels(catalog: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """A Galaxy Zoo DECaLS volunteer catalog -> ``labels`` (the mock's columns) and (id, problem) rows.

    ``id`` is the sanitised ``iauname``; the vote columns of every question are
    kept (a column the catalog lacks is an error naming it) and one
    ``{question}_class`` column per question is added with the mock's rules.
    Rows without a name or position, or repeating an earlier id, are reported.
    """
    need = ["iauname", "ra", "dec"] + [c for q in ALL_QUESTIONS for c in vote_columns(q)]
    missing = [c for c in need if c not in catalog.columns]
    if missing:
        raise ServiceError(
            f"the Galaxy Zoo catalog lacks column(s) {', '.join(missing[:5])}"
            + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        )
    problems: list[tuple[str, str]] = []
    names = catalog["iauname"].astype(str).str.strip()
    ok = names.ne("") & catalog["iauname"].notna()
    problems += [(f"row-{i}", "catalog row without an iauname") for i in np.flatnonzero(~ok.to_numpy())]
    cat = catalog.loc[ok].copy()
    cat.insert(0, "id", [sanitize_id(n) for n in names[ok]])
    pos = np.isfinite(pd.to_numeric(cat["ra"], errors="coerce")) & np.isfinite(
        pd.to_numeric(cat["dec"], errors="coerce")
    )
    problems += [(g, "no valid ra/dec in the catalog") for g in cat.loc[~pos, "id"]]
    cat = cat.loc[pos]
    dup = cat["id"].duplicated()
    problems += [(g, "repeats an earlier catalog row's id (kept the first)") for g in cat.loc[dup, "id"]]
    cat = cat.loc[~dup].reset_index(drop=True)
    votes = cat[["id", "iauname", "ra", "dec"] + need[3:]].copy()
    for c in need[3:]:
        votes[c] = pd.to_numeric(votes[c], errors="coerce")
    labels = pd.concat([votes, classes_from_votes(votes)], axis=1)
    return labels, problems


def select_galaxies(labels: pd.DataFrame, selection: Mapping[str, Any], seed: int) -> tuple[pd.DataFrame, list]:
    """The catalog rows to use: the ``ids`` listed, or the first / a seeded random ``n`` (by id order)."""
    ids = [sanitize_id(i) for i in selection.get("ids") or []]
    if ids:
        by_id = labels.set_index("id", drop=False)
        missing = [i for i in ids if i not in by_id.index]
        return by_id.loc[[i for i in ids if i in by_id.index]].reset_index(drop=True), [
            (i, "not in the Galaxy Zoo catalog") for i in missing
        ]
    n = int(selection["n"])
    ordered = labels.sort_values("id", ignore_index=True)
    if n > len(ordered):
        log.warning("selection asks for %d galaxies; the catalog has %d", n, len(ordered))
    if selection.get("order", "random") == "random":
        rng = np.random.default_rng(np.random.SeedSequence([seed, 8]))
        take = np.sort(rng.choice(len(ordered), size=min(n, len(ordered)), replace=False))
        return ordered.iloc[take].reset_index(drop=True), []
    return ordered.iloc[:n].reset_index(drop=True), []


# --------------------------------------------------------------------------- Legacy Survey cutouts
def legacysurvey_cutout_url(
    base: str,
    ra: float,
    dec: float,
    layer: str,
    bands: Sequence[str],
    pixscale_arcsec: float,
    size_px: int,
    invvar: bool = True,
) -> str:
    """The cutout service URL of one FITS cutout centred on (``ra``, ``dec``) in degrees."""
    query = urllib.parse.urlencode(
        {
            "ra": f"{ra:.7f}",
            "dec": f"{dec:.7f}",
            "layer": layer,
            "pixscale": f"{pixscale_arcsec:g}",
            "size": int(size_px),
            "bands": "".join(bands),
        }  # fmt: skip
    )
    return f"{base}?{query}" + ("&invvar" if invvar else "")


def cutout_items(
    rows: pd.DataFrame, survey: Mapping[str, Any], layer: str, base: str, folder: str | Path, invvar: bool = True
) -> list[Item]:
    """One :class:`Item` per catalog row (``id, ra, dec``): the cutout of ``survey`` into ``folder/<id>.fits``."""
    return [
        Item(
            str(gid),
            legacysurvey_cutout_url(
                base,
                float(ra),
                float(dec),
                layer,
                survey["bands"],
                float(survey["pixscale_arcsec"]),
                int(survey["stamp_px"]),
                invvar,
            ),  # fmt: skip
            item_path(folder, str(gid), ".fits"),
        )
        for gid, ra, dec in zip(rows["id"], rows["ra"], rows["dec"], strict=True)
    ]


# --------------------------------------------------------------------------- Euclid Q1 (IRSA)
EUCLID = "IRSA Euclid Q1 service"
#: the ``layers`` value that sends a survey's cutouts to IRSA's Euclid Q1 MER mosaics
EUCLID_LAYER = "euclid-q1"
EUCLID_SIA = "https://irsa.ipac.caltech.edu/SIA"
EUCLID_COLLECTION = "euclid_DpdMerBksMosaic"


def euclid_sia_url(ra: float, dec: float, radius_arcsec: float = 1.0, base: str = EUCLID_SIA,
                   collection: str = EUCLID_COLLECTION) -> str:  # fmt: skip
    """IRSA's SIA v2 query for the Euclid Q1 MER mosaics covering (``ra``, ``dec``) in degrees."""
    query = urllib.parse.urlencode(
        {"COLLECTION": collection, "POS": f"CIRCLE {ra:.7f} {dec:.7f} {radius_arcsec / 3600:.6g}"}
    )
    return f"{base}?{query}"


def euclid_access_url(votable: str | Path, band: str = "VIS") -> str | None:
    """The science mosaic of ``band`` in an SIA answer (``access_url``), or ``None`` outside the footprint."""
    from astropy.io.votable import parse_single_table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = parse_single_table(str(votable)).to_table()
    if len(table) == 0:
        return None
    for row in table:
        if str(row["dataproduct_subtype"]) == "science" and str(row["energy_bandpassname"]) == band:
            return str(row["access_url"])
    return None


def ibe_cutout_url(access_url: str, ra: float, dec: float, size_px: int) -> str:
    """IRSA's IBE cutout of an image: ``size_px`` square pixels centred on (``ra``, ``dec``), not gzipped."""
    return f"{access_url}?center={ra:.7f},{dec:.7f}deg&size={int(size_px)}pix&gzip=false"


def fetch_euclid_cutouts(
    rows: pd.DataFrame, survey: Mapping[str, Any], folder: str | Path, settings: DownloadSettings,
    sia_base: str = EUCLID_SIA,
) -> pd.DataFrame:  # fmt: skip
    """Euclid VIS cutouts of ``rows`` (``id, ra, dec``): SIA query per galaxy, then the IBE cutout of its tile.

    Returns the download table (:func:`galmap.data.download.download`'s columns) with one
    row per galaxy; a galaxy outside the Q1 footprint is ``failed`` with that reason.
    """
    from galmap.data.cutouts import verify_cutout

    folder = Path(folder)
    band = list(survey["bands"])[0]
    size = int(survey["stamp_px"])

    def votable(path: Path) -> str | None:
        try:
            euclid_access_url(path, band)
        except Exception as exc:  # noqa: BLE001 - astropy raises several types on a bad VOTable
            return f"not an SIA VOTable: {exc}"
        return None

    queries = [Item(str(g), euclid_sia_url(float(ra), float(dec), base=sia_base), item_path(folder / "sia", str(g),
               ".xml")) for g, ra, dec in zip(rows["id"], rows["ra"], rows["dec"], strict=True)]  # fmt: skip
    sia = download(queries, votable, settings, progress=False).set_index("id", drop=False)
    items, outcome = [], {}
    for (gid, ra, dec), q in zip(zip(rows["id"], rows["ra"], rows["dec"], strict=True), queries, strict=True):
        if sia.loc[str(gid), "status"] == "failed":
            outcome[str(gid)] = sia.loc[str(gid)].to_dict() | {"reason": f"SIA query: {sia.loc[str(gid), 'reason']}"}
            continue
        access = euclid_access_url(q.path, band)
        if access is None:
            why = f"not in the Euclid Q1 footprint (no {band} mosaic at this position)"
            outcome[str(gid)] = dict.fromkeys(RESULT_COLUMNS) | {
                "id": str(gid), "url": q.url, "path": "", "status": "failed", "attempts": 0, "bytes": 0,
                "seconds": 0.0, "reason": why,
            }  # fmt: skip
            continue
        items.append(
            Item(str(gid), ibe_cutout_url(access, float(ra), float(dec), size), item_path(folder, str(gid), ".fits"))
        )
    got = download(items, lambda p: verify_cutout(p, [band], (size, size), band), settings)
    for r in got.to_dict("records"):
        outcome[r["id"]] = r
    return pd.DataFrame([outcome[str(g)] for g in rows["id"]])


# --------------------------------------------------------------------------- MaNGA
def manga_maps_url(plateifu: str, base: str = MANGA_SAS, daptype: str = MANGA_DAPTYPE) -> str:
    """The DAP MAPS file of a MaNGA galaxy (``plate-ifu``, e.g. ``7815-3702``)."""
    from galmap.data.manga import check_plateifu

    plate, _, ifu = check_plateifu(plateifu).partition("-")
    return f"{base.rstrip('/')}/{daptype}/{plate}/{ifu}/manga-{plate}-{ifu}-MAPS-{daptype}.fits.gz"


def manga_preimage_url(mangaid: str, designid: int, base: str = MANGA_PREIMAGING_URL) -> str:
    """The preimaging file (SDSS u,g,r,i,z) of MaNGA target ``mangaid`` in plate design ``designid``."""
    from galmap.data.manga import check_mangaid

    design = int(designid)
    if design <= 0:
        raise ValueError(f"MaNGA design id {designid!r} is not a positive integer")
    return f"{base.rstrip('/')}/D{design // 100:04d}XX/{design}/preimage-{check_mangaid(mangaid)}.fits.gz"


def _maps_problem(path: Path) -> str | None:
    from galmap.data.cutouts import CutoutError
    from galmap.data.manga import fits_checksum_problem, maps_meta, read_halpha_map

    try:
        read_halpha_map(path)
        maps_meta(path)
    except (CutoutError, ValueError, KeyError) as exc:
        return f"not a DAP MAPS file with an Ha-6564 map: {exc}"
    return fits_checksum_problem(path)


def fetch_manga_maps(
    plateifus: Sequence[str], folder: str | Path, settings: DownloadSettings, base: str = MANGA_SAS,
    daptype: str = MANGA_DAPTYPE,
) -> pd.DataFrame:  # fmt: skip
    """Fetch the DAP MAPS files of MaNGA galaxies (``plate-ifu``) into ``folder``, each checked for an Hα map."""
    items = [Item(p, manga_maps_url(p, base, daptype), item_path(folder, f"manga-{p}-MAPS-{daptype}", ".fits.gz"))
             for p in plateifus]  # fmt: skip
    return download(items, _maps_problem, settings)


def _failed_row(gid: str, url: str, reason: str) -> dict[str, Any]:
    return dict.fromkeys(RESULT_COLUMNS) | {
        "id": gid, "url": url, "path": "", "status": "failed", "attempts": 0, "bytes": 0, "seconds": 0.0,
        "reason": reason,
    }  # fmt: skip


def fetch_manga_shard(
    plateifus: Sequence[str], bands: Sequence[str], folder: str | Path, cfg: Mapping[str, Any],
    maps_settings: DownloadSettings, preimaging_settings: DownloadSettings,
) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """The MAPS files of ``plateifus``, then the u,g,r,i,z preimaging of each galaxy whose MAPS came.

    ``cfg`` is ``data.manga`` (``maps_url``, ``daptype``, ``preimaging_url``). Returns two
    download tables (one row per galaxy, in order) with ``ra, dec, mangaid, designid``
    added from the MAPS header; a galaxy without a MAPS file cannot be looked up in
    the preimaging (its MaNGA id and design come from that header) and says so.
    """
    from galmap.data.manga import maps_meta

    folder = Path(folder)
    maps = fetch_manga_maps(plateifus, folder / "maps", maps_settings, cfg["maps_url"], cfg["daptype"])
    meta, items, pre_rows = {}, [], {}
    for r in maps.to_dict("records"):
        if r["status"] == "failed":
            pre_rows[r["id"]] = _failed_row(r["id"], "", f"no MAPS file ({r['reason']}), so no MaNGA id and design "
                                            "to find its preimaging")  # fmt: skip
            continue
        meta[r["id"]] = m = maps_meta(r["path"])
        try:
            url = manga_preimage_url(m["mangaid"], m["designid"], cfg["preimaging_url"])
        except ValueError as exc:
            pre_rows[r["id"]] = _failed_row(r["id"], "", f"MAPS header: {exc}")
            continue
        items.append(Item(r["id"], url, item_path(folder / "preimaging", f"preimage-{m['mangaid']}", ".fits.gz")))

    def preimage_problem(path: Path) -> str | None:
        from galmap.data.cutouts import CutoutError
        from galmap.data.manga import fits_checksum_problem, read_preimage

        try:
            read_preimage(path, bands)
        except CutoutError as exc:
            return f"not a MaNGA preimaging file with bands {''.join(bands)}: {exc}"
        return fits_checksum_problem(path)

    for r in download(items, preimage_problem, preimaging_settings).to_dict("records"):
        pre_rows[r["id"]] = r
    pre = pd.DataFrame([pre_rows[p] for p in maps["id"]])
    extra = pd.DataFrame([meta.get(p, {}) for p in maps["id"]], columns=["ra", "dec", "mangaid", "designid"])
    return pd.concat([maps, extra], axis=1), pd.concat([pre, extra], axis=1)


def read_manga_halpha(path: str | Path) -> tuple[np.ndarray, np.ndarray, float]:
    """Hα flux map, its inverse variance (1e-17 erg/s/cm²/spaxel) and the spaxel size (arcsec) of a DAP MAPS file.

    Spaxels flagged in ``EMLINE_GFLUX_MASK`` get inverse variance 0 (:func:`galmap.data.manga.read_halpha_map`).
    """
    from galmap.data.manga import read_halpha_map

    sky = read_halpha_map(path)
    return sky.planes[0], sky.ivar[0], sky.pixscale_arcsec
