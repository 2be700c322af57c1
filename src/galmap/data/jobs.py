"""The real-data jobs: local and Legacy Survey catalogs, downloads (cutouts, MaNGA), ingesting FITS cutouts.

Files in, files out (the package's conventions: :mod:`galmap`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from galmap.core.failures import FailureLog
from galmap.core.io import read_table, write_shard, write_table

log = logging.getLogger("galmap")


def _write_problems(stage: str, problems: Sequence[tuple[str, str]], path: str) -> None:
    failures = FailureLog(stage)
    for gid, reason in problems:
        failures.add(gid, reason)
    failures.write(path)


def local_catalog_file(config: Mapping[str, Any], catalog_path: str, labels_path: str, failures_path: str) -> None:
    """The local folder's catalog (``id, file, ra, dec, shard``), labels and unmatched files/rows."""
    from galmap.data.plan import local_catalog

    catalog, labels, problems = local_catalog(config)
    write_table(catalog_path, catalog)
    write_table(labels_path, labels)
    _write_problems("data", [(g, f"local: {r}") for g, r in problems], failures_path)
    log.info("local folder %s: %d galaxies; %d problems", config["data"]["local"]["path"], len(catalog), len(problems))


def legacysurvey_catalog_file(
    config: Mapping[str, Any], folder: str, catalog_path: str, labels_path: str, counts_path: str, failures_path: str
) -> None:
    """Fetch the Galaxy Zoo DECaLS catalog (Zenodo, MD5-checked); write the selection's catalog and labels."""
    from galmap.core.galaxyzoo import class_counts
    from galmap.data.archives import ZENODO, download_settings, fetch_zenodo_file, gz_catalog_labels, select_galaxies

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
    from galmap.data.archives import (
        EUCLID,
        EUCLID_LAYER,
        EUCLID_SIA,
        LEGACY_SURVEY,
        cutout_items,
        download_settings,
        fetch_euclid_cutouts,
    )
    from galmap.data.cutouts import verify_cutout
    from galmap.data.download import download
    from galmap.data.plan import shard_members

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
    from galmap.data.archives import MANGA, MANGA_PREIMAGING, download_settings, fetch_manga_shard
    from galmap.data.manga import manga_sample
    from galmap.data.plan import manga_surveys, shard_members

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
    from galmap.data.ingest import ingest_colour_images, ingest_cutouts
    from galmap.data.manga import ingest_manga
    from galmap.data.plan import local_format, manga_surveys, shard_members

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
