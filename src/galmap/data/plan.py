"""Where the images come from, and which stages the data allow.

``data.source`` is one of

- ``mock``: the GalSim mock survey (every configured survey, with truth and labels);
- ``local``: a folder of FITS cutouts of one configured survey (``data.local.survey``)
  with an optional CSV catalog (:mod:`galmap.data.ingest`), or of PNG/JPEG colour
  composites (no calibration: only the image-only stages run on them);
- ``legacysurvey``: the Galaxy Zoo DECaLS catalog from Zenodo and cutouts from the
  Legacy Survey cutout service for the surveys of ``data.legacysurvey.layers``
  (:mod:`galmap.data.archives`), and, when ``data.manga.plateifus`` lists galaxies, the
  MaNGA sample: DAP Hα maps and SDSS u,g,r,i,z preimaging as the surveys
  ``data.manga.halpha_survey`` and ``data.manga.ugriz_survey`` (:mod:`galmap.data.manga`).
  The MaNGA galaxies are their own sample with their own shards
  (:func:`survey_shards`): shard ``NNNN`` of a MaNGA survey holds MaNGA galaxies,
  not the Galaxy Zoo galaxies of shard ``NNNN`` of the Legacy Survey surveys.

:func:`stage_plan` says, from the config alone (and the local folder's listing),
which stages can run on the data and why the others cannot: a stage whose survey
is not in the data, classification without labels, the domain stage without its
target surveys, super-resolution or Hα without both of their surveys, the mock's
truth figures on real data. The workflow builds only
the stages that can run and logs the reasons for the others, so a real-data run
does not fail on what the data cannot give.

The preprocessing settings of one survey's images are :func:`galmap.preprocess.settings.survey_params`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

SOURCES = ("mock", "local", "legacysurvey")


FITS_SUFFIXES = (".fits", ".fits.gz", ".fit", ".fits.fz")
COLOUR_SUFFIXES = (".png", ".jpg", ".jpeg")
#: why the flux-based stages cannot run on colour composites
UNCALIBRATED = "colour images (PNG/JPEG) carry no flux calibration, which this stage needs"


def local_format(config: Mapping[str, Any]) -> str:
    """``fits`` or ``colour``: ``data.local.format``, or (``auto``) what the folder and catalog hold."""
    local = config["data"]["local"]
    if local.get("format", "auto") != "auto":
        return str(local["format"])
    return _detect_format(str(local["path"]), local.get("catalog") or None)


@lru_cache(maxsize=4)
def _detect_format(path: str, catalog: str | None) -> str:
    """Read the folder and the catalog's ``file`` column once per DAG build (the plan asks several times)."""
    folder = Path(path)
    names = [p.name.lower() for p in folder.iterdir()] if folder.is_dir() else []
    if catalog and Path(catalog).is_file():
        cat = pd.read_csv(catalog, nrows=1000)
        if "file" in cat:
            names += [str(f).lower() for f in cat["file"]]
    has_fits = any(n.endswith(FITS_SUFFIXES) for n in names)
    return "colour" if not has_fits and any(n.endswith(COLOUR_SUFFIXES) for n in names) else "fits"


@lru_cache(maxsize=4)
def _inventory(path: str, catalog: str | None, fmt: str) -> tuple[pd.DataFrame, tuple[tuple[str, str], ...]]:
    from galmap.data.ingest import COLOUR_PATTERNS, FITS_PATTERNS, inventory

    table, problems = inventory(path, catalog, COLOUR_PATTERNS if fmt == "colour" else FITS_PATTERNS)
    return table, tuple(problems)


def local_inventory(config: Mapping[str, Any]) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """The local folder's galaxies (``id, file[, catalog columns]``) and (id, problem) rows."""
    local = config["data"].get("local") or {}
    if not local.get("path"):
        raise ValueError("data.source is 'local' but data.local.path (the folder of cutouts) is not set")
    table, problems = _inventory(str(local["path"]), local.get("catalog") or None, local_format(config))
    return table.copy(), list(problems)


def manga_surveys(config: Mapping[str, Any]) -> dict[str, str]:
    """The MaNGA surveys of a ``legacysurvey`` run: ``{"halpha": survey, "ugriz": survey}``, or ``{}`` without MaNGA."""
    manga = config["data"].get("manga") or {}
    if config["data"]["source"] != "legacysurvey" or not manga.get("plateifus"):
        return {}
    return {"halpha": str(manga.get("halpha_survey", "halpha")), "ugriz": str(manga.get("ugriz_survey", "sdss"))}


def source_surveys(config: Mapping[str, Any]) -> list[str]:
    """The configured surveys the data source provides images of, in config order."""
    source = config["data"]["source"]
    if source == "mock":
        return list(config["surveys"])
    if source == "local":
        return [config["data"]["local"]["survey"]]
    if source == "legacysurvey":
        names = set(config["data"]["legacysurvey"]["layers"]) | set(manga_surveys(config).values())
        return [s for s in config["surveys"] if s in names]
    raise ValueError(f"data.source: unknown source {source!r} ({', '.join(SOURCES)})")


def n_galaxies(config: Mapping[str, Any]) -> int:
    """How many galaxies the data source has (the rows of the catalog the shards cut)."""
    source = config["data"]["source"]
    if source == "mock":
        return int(config["mock"]["n_galaxies"])
    if source == "local":
        return len(local_inventory(config)[0])
    sel = config["data"]["legacysurvey"]["selection"]
    return len(sel["ids"]) if sel.get("ids") else int(sel["n"])


def shard_names(config: Mapping[str, Any]) -> list[str]:
    """``0000``, ``0001``, ... one per ``shard_size`` galaxies (at least one)."""
    n = n_galaxies(config)
    if n == 0:
        raise ValueError("the data source has no galaxies (an empty folder or catalog?)")
    return [f"{i:04d}" for i in range(math.ceil(n / int(config["shard_size"])))]


def survey_shards(config: Mapping[str, Any], survey: str) -> list[str]:
    """The shards of one survey: those of the MaNGA sample for a MaNGA survey, else :func:`shard_names`."""
    if survey in manga_surveys(config).values():
        n = len(config["data"]["manga"]["plateifus"])
        return [f"{i:04d}" for i in range(math.ceil(n / int(config["shard_size"])))]
    return shard_names(config)


def label_columns(config: Mapping[str, Any]) -> set[str] | None:
    """The columns of the label table the data will have; ``None`` when there are no labels."""
    source = config["data"]["source"]
    if source == "local":
        if not config["data"]["local"].get("catalog"):
            return None
        return set(local_inventory(config)[0].columns)
    from galmap.core.galaxyzoo import ALL_QUESTIONS, QUESTIONS, vote_columns

    cols = {c for q in ALL_QUESTIONS for c in vote_columns(q)} | {q.class_col for q in QUESTIONS}
    return cols | {"id", "ra", "dec"}


def usable_questions(config: Mapping[str, Any]) -> tuple[list[Any], dict[str, str]]:
    """The configured ``classify.questions`` entries the labels can answer, and why the others cannot."""
    from galmap.classify.targets import target_specs

    entries = list(config["classify"]["questions"])
    columns = label_columns(config)
    if columns is None:
        return [], {"classify": "the data have no catalog with labels (data.local.catalog)"}
    kept, why = [], {}
    for entry, spec in zip(entries, target_specs(entries), strict=True):
        need = [spec.column] if spec.column else [c for cols in spec.answers for c in cols] + [spec.total_votes]
        missing = [c for c in need if c not in columns]
        if missing:
            why[spec.name] = f"the catalog has no column {missing[0]!r}" + (
                f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            )
        else:
            kept.append(entry)
    return kept, why


def stage_plan(config: Mapping[str, Any]) -> dict[str, str | None]:
    """Each optional stage -> ``None`` when it runs on these data, else the reason it is skipped."""
    surveys = set(source_surveys(config))
    source = config["data"]["source"]
    plan: dict[str, str | None] = {}
    st, vae = config["structure"]["survey"], config["vae"]["survey"]
    colour = source == "local" and local_format(config) == "colour"
    plan["structure"] = None if st in surveys else f"structure.survey {st!r} is not in the data ({sorted(surveys)})"
    if colour:
        plan["structure"] = UNCALIBRATED
    plan["vae"] = None if vae in surveys else f"vae.survey {vae!r} is not in the data ({sorted(surveys)})"
    plan["outliers"] = plan["vae"]
    questions, why = usable_questions(config)
    if plan["vae"]:
        plan["classify"] = plan["vae"]
    elif not questions:
        plan["classify"] = "; ".join(f"{k}: {v}" for k, v in why.items()) or "no questions configured"
    else:
        plan["classify"] = None
    plan["flow"] = plan["structure"] or plan["vae"]
    pairs = domain_plan(config)
    plan["domain"] = (
        ("it needs the classification stage, which is skipped" if plan["classify"] else None)
        or (UNCALIBRATED if colour else None)
        or ("no pair of domain.pairs has its target surveys in the data: " + "; ".join(pairs.values())
            if all(pairs.values()) else None)
    )  # fmt: skip
    for stage, keys in (
        ("superres", ("source_survey", "target_survey")),
        ("halpha", ("input_survey", "target_survey")),
    ):
        names = [config[stage][k] for k in keys]
        missing = [f"{stage}.{k} {n!r}" for k, n in zip(keys, names, strict=True) if n not in surveys]
        plan[stage] = (
            UNCALIBRATED
            if colour
            else (f"{' and '.join(missing)} not in the data ({sorted(surveys)})" if missing else None)
        )
    plan["truth"] = None if source == "mock" else "only the mock survey has a truth table"
    uni = config.get("unified") or {}
    missing = [s for s in [*uni.get("surveys", []), *uni.get("decode_only", [])] if s not in surveys]
    plan["unified"] = (
        ("it needs the classification stage, which is skipped" if plan["classify"] else None)
        or (UNCALIBRATED if colour else None)
        or (f"unified survey(s) {', '.join(missing)} not in the data ({sorted(surveys)})" if missing else None)
        or (None if uni.get("surveys") else "unified.surveys is empty")
    )
    plan["realism"] = realism_skip(config)
    return plan


def realism_skip(config: Mapping[str, Any]) -> str | None:
    """Why the realism stage cannot run (it needs the mock and the real Galaxy Zoo images), or None."""
    if config["data"]["source"] != "mock":
        return "it compares the mock survey with real images; the data are not the mock"
    r = config.get("realism") or {}
    if "decals" not in config["surveys"] or r.get("survey", "decals") not in config["surveys"]:
        return f"realism.survey {r.get('survey')!r} is not a configured survey"
    for key in ("real_images", "real_catalog", "real_votes"):
        path = Path(str(r.get(key, "")))
        if not (path.is_dir() if key == "real_images" else path.is_file()):
            return f"realism.{key} {str(path)!r} is not there (relative to the working directory)"
    return None


def domain_plan(config: Mapping[str, Any]) -> dict[str, str | None]:
    """Each pair of ``domain.pairs`` -> None (it runs) or why it is skipped (a target survey not in the data)."""
    surveys = set(source_surveys(config))
    out = {}
    for pair in config["domain"]["pairs"]:
        absent = sorted(set(pair["target_bands"].values()) - surveys)
        out[str(pair["name"])] = f"{pair['name']}: {', '.join(absent)} not in the data" if absent else None
    return out


def skipped_messages(config: Mapping[str, Any]) -> list[str]:
    """One line per skipped stage (and per question classification cannot answer), for the run's log."""
    plan = stage_plan(config)
    lines = [f"galmap: stage '{k}' skipped: {v}" for k, v in plan.items() if v and k != "truth"]
    if not plan["domain"]:
        lines += [f"galmap: domain pair skipped: {why}" for why in domain_plan(config).values() if why]
    if not plan["classify"]:
        _, why = usable_questions(config)
        lines += [f"galmap: question '{q}' not classified: {v}" for q, v in why.items()]
    return lines


def local_catalog(config: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, list[tuple[str, str]]]:
    """``catalog`` (``id, file, ra, dec, shard``) and ``labels`` (``id`` + catalog columns) of a local folder."""
    table, problems = local_inventory(config)
    size = int(config["shard_size"])
    catalog = table[["id", "file"]].copy()
    for col in ("ra", "dec"):
        catalog[col] = pd.to_numeric(table[col], errors="coerce") if col in table else float("nan")
    catalog["shard"] = catalog.index // size
    labels = table.drop(columns=["file"])
    return catalog, labels, problems


def shard_members(catalog: pd.DataFrame, shard: int) -> pd.DataFrame:
    """The catalog rows of shard number ``shard`` (``shard`` column)."""
    rows = catalog[catalog["shard"] == shard]
    if rows.empty:
        raise ValueError(f"shard {shard:04d} has no galaxies in the catalog ({len(catalog)} rows)")
    return rows


def relative_to(path: str | Path, base: str | Path) -> str:
    """``path`` relative to ``base`` when inside it, else absolute (for tables that name files)."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path(base).resolve()))
    except ValueError:
        return str(p)
