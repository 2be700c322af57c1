"""Loading and validating the workflow configuration.

The configuration is YAML read with ``yaml.safe_load`` and checked against the
JSON schema in ``workflow/schemas/config.schema.yaml``. A misspelled key, a
wrong type or an impossible value stops the run with a :class:`ConfigError`
whose message names the offending key as a dotted path (``mock.n_galaxies``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

#: The schema shipped with the workflow, relative to the repository root.
SCHEMA_RELPATH = Path("workflow") / "schemas" / "config.schema.yaml"


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


def validate_config(config: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``config`` against ``schema`` and return a copy with defaults filled in.

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
    check_references(out, explicit=config)
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
    if "volunteers" in config.get("mock", {}):
        refs.append(("mock.volunteers.label_survey", config["mock"]["volunteers"].get("label_survey")))
    if "anomalies" in config.get("mock", {}):
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
    vae_survey = config.get("vae", {}).get("survey")
    if dom and "target_bands" in dom and vae_survey in surveys:
        source_bands = list(surveys[vae_survey]["bands"])
        tb = dom["target_bands"]
        if sorted(tb) != sorted(source_bands):
            raise ConfigError(
                f"invalid configuration: config key 'domain.target_bands' maps bands {', '.join(tb)}; it needs "
                f"exactly the bands of the source survey {vae_survey!r} ({', '.join(source_bands)})"
            )
        for band, name in tb.items():
            if name not in surveys:
                raise ConfigError(
                    f"invalid configuration: config key 'domain.target_bands.{band}' names survey {name!r}, "
                    f"which is not configured (surveys: {', '.join(surveys)})"
                )
            if band not in surveys[name]["bands"]:
                raise ConfigError(
                    f"invalid configuration: config key 'domain.target_bands.{band}': survey {name!r} has no band "
                    f"{band!r} ({', '.join(surveys[name]['bands'])})"
                )
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
            f"'surveys' ({', '.join(surveys)})"
        )
    cl = config.get("classify")
    if cl and "questions" in cl:
        from galmap.classify.targets import target_specs

        try:
            target_specs(cl["questions"])
        except ValueError as exc:
            raise ConfigError(f"invalid configuration: config key 'classify.questions': {exc}") from None


def _fill_defaults(instance: Any, schema: Mapping[str, Any]) -> Any:
    """Fill ``default`` values of object properties recursively (JSON-schema style)."""
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


def load_config(path: str | Path, schema_path: str | Path) -> dict[str, Any]:
    """Load a YAML config file and validate it against the YAML schema at ``schema_path``."""
    config = load_yaml(path)
    if not isinstance(config, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, not {type(config).__name__}")
    return validate_config(config, load_yaml(schema_path))
