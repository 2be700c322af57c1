"""Loading, merging and validating the workflow configuration.

The configuration is YAML read with ``yaml.safe_load`` and checked against the
JSON schema in ``workflow/schemas/config.schema.yaml``. A misspelled key, a
wrong type or an impossible value stops the run with a :class:`ConfigError`
whose message names the offending key as a dotted path (``mock.n_galaxies``).

Overlays, as Snakemake merges config files: the embedded default
``config/config.yaml`` comes first and every further file is merged on top, in
order (:func:`merge`): a mapping is merged key by key, any other value (a number,
a string, a list) replaces the one before. A key set to ``null`` removes what the
files before gave it (:func:`remove_nulls`): a survey, a per-survey setting, one
band of a mapping; a removed key then takes the schema's default, if it has one.
:func:`resolve_config` does the removal and the validation of a merged config;
:func:`load_config` reads files the way the workflow does.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

#: The schema shipped with the workflow, relative to the repository root.
SCHEMA_RELPATH = Path("workflow") / "schemas" / "config.schema.yaml"
#: The embedded default configuration, relative to the repository root: always loaded first.
DEFAULT_RELPATH = Path("config") / "config.yaml"


class ConfigError(ValueError):
    """The configuration is malformed; the message names the key and the cause."""


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file safely (``yaml.safe_load``), with a clear error on bad syntax."""
    path = Path(path)
    try:
        with path.open() as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    path = _key_path(error)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        where = f"under '{path}'" if path != "<top level>" else "at the top level"
        keys = ", ".join(f"'{path}.{k}'" if path != "<top level>" else f"'{k}'" for k in extra)
        return f"unknown config key {keys} {where}; allowed keys here: {', '.join(allowed)}"
    if error.validator == "required":
        return f"config key '{path}' is missing a required entry: {error.message}"
    return f"config key '{path}': {error.message}"


def merge(base: Mapping[str, Any], *overlays: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with each overlay merged on top, in order, as Snakemake merges config files.

    Mappings merge key by key (recursively); any other value replaces the one before, a
    ``None`` included (it marks a removal: :func:`remove_nulls`). The inputs are not changed.
    """
    out = copy.deepcopy(dict(base))
    for overlay in overlays:
        for key, value in overlay.items():
            if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
                out[key] = merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
    return out


def remove_nulls(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` without the keys whose value is ``None``, at every depth of mappings.

    This is how an overlay removes what the default (or an earlier overlay) has:
    ``surveys: {sdss: null}`` drops the survey ``sdss``. Values inside lists are kept.
    """
    return {k: remove_nulls(v) if isinstance(v, Mapping) else v for k, v in config.items() if v is not None}


def _changed(config: Mapping[str, Any], default: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``config`` that differs from ``default`` (keys absent from it, or other values)."""
    out = {}
    for key, value in config.items():
        if key not in default:
            out[key] = value
        elif isinstance(value, Mapping) and isinstance(default[key], Mapping):
            if sub := _changed(value, default[key]):
                out[key] = sub
        elif value != default[key]:
            out[key] = value
    return out


def resolve_config(
    config: Mapping[str, Any], schema: Mapping[str, Any], default: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The configuration the workflow runs: ``config`` (merged files) without its ``null`` keys, validated.

    ``default`` is the embedded default the files were merged onto: the keys an overlay
    sets, not those it inherits, are the ones checked strictly where a default may name
    a survey the data lack (:func:`check_references`). The ``mock`` section applies to
    ``data.source: mock`` only and is dropped for the other sources.
    """
    given = remove_nulls(config)
    out = validate_config(given, schema, explicit=_changed(given, default) if default is not None else None)
    if out["data"]["source"] != "mock":
        out.pop("mock", None)
    return out


def validate_config(
    config: Mapping[str, Any], schema: Mapping[str, Any], explicit: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Validate ``config`` against ``schema`` and return a copy with defaults filled in.

    ``explicit``: the keys the user set (for :func:`check_references`; default ``config`` itself).

    Raises
    ------
    ConfigError
        On the first (deepest) violation, naming the key as a dotted path.
    """
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = validator_cls(schema)
    errors = sorted(validator.iter_errors(dict(config)), key=lambda e: -len(e.absolute_path))
    if errors:
        messages = [_describe(e) for e in errors]
        raise ConfigError("invalid configuration: " + "; ".join(dict.fromkeys(messages)))
    out = _fill_defaults(dict(config), schema)
    check_references(out, explicit=config if explicit is None else explicit)
    return out


def check_references(config: Mapping[str, Any], explicit: Mapping[str, Any] | None = None) -> None:
    """Check keys that name other parts of the config (a survey, a band).

    The surveys of ``superres`` and ``halpha`` are checked when the config sets them
    (``explicit``: the config as given, before defaults; ``None``: check them all): their
    defaults (decals/euclid, sdss/halpha) name surveys a config may not have, and then
    the stage is skipped (:func:`galmap.data.plan.stage_plan`) rather than the run stopped.
    """
    surveys = config.get("surveys", {})
    refs = []
    mock = config.get("mock", {}) if config.get("data", {}).get("source", "mock") == "mock" else {}
    if "volunteers" in mock:
        refs.append(("mock.volunteers.label_survey", config["mock"]["volunteers"].get("label_survey")))
    if "anomalies" in mock:
        refs.append(("mock.anomalies.artefact_survey", config["mock"]["anomalies"].get("artefact_survey")))
    for stage in ("structure", "vae"):
        if stage in config:
            refs.append((f"{stage}.survey", config[stage].get("survey")))
    data = config.get("data", {})
    local = data.get("local") or {}
    if data.get("source") == "local":
        refs.append(("data.local.survey", local.get("survey")))
        if not local.get("path"):
            raise ConfigError(
                "invalid configuration: data.source is 'local' but config key 'data.local.path' (the folder of FITS "
                "cutouts) is not set; e.g. --config data='{source: local, local: {path: my/cutouts}}'"
            )
    if data.get("source") == "legacysurvey":
        layers = (data.get("legacysurvey") or {}).get("layers", {})
        for name in layers:
            refs.append((f"data.legacysurvey.layers.{name}", name))
        manga = data.get("manga") or {}
        if manga.get("plateifus"):
            for key in ("ugriz_survey", "halpha_survey"):
                name = manga.get(key)
                refs.append((f"data.manga.{key}", name))
                if name in layers:
                    raise ConfigError(
                        f"invalid configuration: survey {name!r} is both MaNGA's (data.manga.{key}) and a Legacy "
                        f"Survey layer (data.legacysurvey.layers.{name}); a survey has one source"
                    )
    for stage, keys in (
        ("superres", ("source_survey", "target_survey")),
        ("halpha", ("input_survey", "target_survey")),
    ):
        for key in keys:
            given = explicit is None or key in ((explicit or {}).get(stage) or {})
            if stage in config and key in config[stage] and given:
                refs.append((f"{stage}.{key}", config[stage][key]))
    for key, name in refs:
        if name is not None and name not in surveys:
            raise ConfigError(
                f"invalid configuration: config key '{key}' names survey {name!r}, which is not "
                f"configured (surveys: {', '.join(surveys)})"
            )
    st = config.get("structure")
    if st and st.get("survey") in surveys:
        bands = surveys[st["survey"]]["bands"]
        if st.get("morph_band") not in bands:
            raise ConfigError(
                f"invalid configuration: config key 'structure.morph_band' is {st.get('morph_band')!r}, "
                f"not a band of survey {st['survey']!r} ({', '.join(bands)})"
            )
    fl = config.get("flow")
    if fl and st and st.get("survey") in surveys:
        from galmap.structure.parameters import check_names

        try:
            check_names(fl.get("parameters", []), surveys[st["survey"]]["bands"])
        except ValueError as exc:
            raise ConfigError(f"invalid configuration: config key 'flow.parameters': {exc}") from None
        extra = [p for p in fl.get("gallery_parameters", []) if p not in fl.get("parameters", [])]
        if extra:
            raise ConfigError(
                f"invalid configuration: config key 'flow.gallery_parameters' names {', '.join(extra)}, "
                f"not among flow.parameters ({', '.join(fl.get('parameters', []))})"
            )
    dom = config.get("domain")
    if dom and "pairs" in dom:
        # the default's pairs may name a survey a config removed: that pair is skipped (galmap.data.plan.domain_plan)
        strict = explicit is None or "pairs" in ((explicit or {}).get("domain") or {})
        check_domain_pairs(dom, surveys, config.get("vae", {}).get("survey"), strict)
    sr, st_survey = config.get("superres") or {}, (config.get("structure") or {}).get("survey")
    if sr.get("sersic_base") and st_survey is not None and sr.get("source_survey") != st_survey:
        raise ConfigError(
            f"invalid configuration: config key 'superres.sersic_base' draws the Sérsic base from the structure "
            f"stage's fits of structure.survey {st_survey!r}, not of superres.source_survey "
            f"{sr.get('source_survey')!r}; set both to the same survey or superres.sersic_base to false"
        )
    for key in ("superres.target_survey", "halpha.target_survey"):
        stage, name = key.split(".")
        target = config.get(stage, {}).get(name)
        if explicit is not None and name not in ((explicit or {}).get(stage) or {}):
            continue
        if target in surveys and len(surveys[target]["bands"]) != 1:
            raise ConfigError(
                f"invalid configuration: config key '{key}' names survey {target!r} with bands "
                f"{', '.join(surveys[target]['bands'])}; the generated image has exactly one band"
            )
    if unknown := sorted(set((config.get("preprocess") or {}).get("surveys") or {}) - set(surveys)):
        raise ConfigError(
            f"invalid configuration: config key 'preprocess.surveys' names {', '.join(unknown)}, not a survey of "
            f"'surveys' ({', '.join(surveys)}); a removed survey's settings go too, e.g. "
            f"preprocess: {{surveys: {{{unknown[0]}: null}}}}"
        )
    cl = config.get("classify")
    if cl and "questions" in cl:
        from galmap.classify.targets import target_specs

        try:
            target_specs(cl["questions"])
        except ValueError as exc:
            raise ConfigError(f"invalid configuration: config key 'classify.questions': {exc}") from None


def check_domain_pairs(
    domain: Mapping[str, Any], surveys: Mapping[str, Any], classifier_survey: str | None, strict: bool = True
) -> None:
    """Check ``domain.pairs``: unique names, the classifier's survey as source, configured target surveys that
    observe every band of the source, and overrides that name keys of ``domain.dann`` / ``domain.distill``.

    ``strict`` false (the pairs are the default's, not the user's): a pair naming a survey that is not
    configured is left unchecked (the stage skips it) rather than stopping the run."""
    names = [p.get("name") for p in domain["pairs"]]
    if dup := sorted({n for n in names if names.count(n) > 1}):
        raise ConfigError(f"invalid configuration: config key 'domain.pairs' names pair(s) {', '.join(dup)} twice")
    for k, pair in enumerate(domain["pairs"]):
        key = f"domain.pairs[{k}] ({pair.get('name')})"
        source = pair.get("source", classifier_survey)
        if classifier_survey is not None and source != classifier_survey:
            raise ConfigError(
                f"invalid configuration: config key '{key}.source' is {source!r}; the classifier adapted is trained "
                f"on vae.survey {classifier_survey!r}, so the source must be {classifier_survey!r}"
            )
        if source not in surveys:
            raise ConfigError(
                f"invalid configuration: config key '{key}.source' names survey {source!r}, which is not configured "
                f"(surveys: {', '.join(surveys)})"
            )
        source_bands = list(surveys[source]["bands"])
        tb = pair["target_bands"]
        if not strict and any(name not in surveys for name in tb.values()):
            continue
        if missing := [b for b in source_bands if b not in tb]:
            raise ConfigError(
                f"invalid configuration: config key '{key}.target_bands' has no target survey for band(s) "
                f"{', '.join(missing)}; it needs exactly the bands of the source survey {source!r} "
                f"({', '.join(source_bands)})"
            )
        if extra := [b for b in tb if b not in source_bands]:
            raise ConfigError(
                f"invalid configuration: config key '{key}.target_bands' maps band(s) {', '.join(extra)}, not bands "
                f"of the source survey {source!r}; it needs exactly {', '.join(source_bands)}"
            )
        for band, name in tb.items():
            if name not in surveys:
                raise ConfigError(
                    f"invalid configuration: config key '{key}.target_bands.{band}' names survey {name!r}, "
                    f"which is not configured (surveys: {', '.join(surveys)})"
                )
            if band not in surveys[name]["bands"]:
                raise ConfigError(
                    f"invalid configuration: config key '{key}.target_bands.{band}': survey {name!r} has no band "
                    f"{band!r} ({', '.join(surveys[name]['bands'])})"
                )
        for method in ("dann", "distill"):
            if unknown := sorted(set(pair.get(method) or {}) - set(domain.get(method) or {})):
                raise ConfigError(
                    f"invalid configuration: config key '{key}.{method}' overrides {', '.join(unknown)}, not keys of "
                    f"domain.{method} ({', '.join(sorted(domain.get(method) or {}))})"
                )


def _fill_defaults(instance: Any, schema: Mapping[str, Any]) -> Any:
    """Fill ``default`` values of object properties recursively (JSON-schema style), also in arrays' items."""
    if isinstance(instance, list) and schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        return [_fill_defaults(item, schema["items"]) for item in instance]
    if not isinstance(instance, dict) or schema.get("type") != "object":
        return instance
    out = dict(instance)
    for key, sub in schema.get("properties", {}).items():
        if key not in out and "default" in sub:
            out[key] = sub["default"]
        if key in out:
            out[key] = _fill_defaults(out[key], sub)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key in out:
            if key not in schema.get("properties", {}):
                out[key] = _fill_defaults(out[key], extra)
    return out


def _mapping(path: str | Path) -> dict[str, Any]:
    config = load_yaml(path)
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, not {type(config).__name__}")
    return config


def load_config(
    path: str | Path | Sequence[str | Path], schema_path: str | Path, default: str | Path | None = "embedded"
) -> dict[str, Any]:
    """Load config files as the workflow does: the default first, each file of ``path`` merged on top.

    ``default``: ``"embedded"`` is the repository's ``config/config.yaml`` (found from
    ``schema_path``, which is ``workflow/schemas/config.schema.yaml`` of the same checkout);
    ``None`` reads the files alone. Returns :func:`resolve_config` of the merge.
    """
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    schema_path = Path(schema_path)
    if default == "embedded":
        default = schema_path.resolve().parents[len(SCHEMA_RELPATH.parts) - 1] / DEFAULT_RELPATH
    base = _mapping(default) if default is not None else {}
    config = merge(base, *(_mapping(p) for p in paths))
    return resolve_config(config, load_yaml(schema_path), base if default is not None else None)
