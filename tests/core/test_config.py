"""Config loading and validation: errors name the offending key."""

from __future__ import annotations

import copy

import pytest

from galmap.core.config import ConfigError, load_config, load_yaml, validate_config
from tests.conftest import REPO, SCHEMA


@pytest.fixture(scope="module")
def schema():
    return load_yaml(SCHEMA)


def test_shipped_configs_are_valid():
    for name in ("config.yaml", "test.yaml"):
        cfg = load_config(REPO / "config" / name, SCHEMA)
        assert cfg["data"]["source"] == "mock"
        # defaults are filled in
        assert cfg["preprocess"]["norm_softening"] > 0
        assert cfg["mock"]["volunteers"]["label_survey"] == "decals"


def test_misspelled_key_is_named(default_config, schema):
    cfg = copy.deepcopy(default_config)
    cfg["mock"]["n_galaxys"] = cfg["mock"].pop("n_galaxies")
    with pytest.raises(ConfigError, match=r"'mock\.n_galaxys'"):
        validate_config(cfg, schema)


def test_unknown_top_level_key_is_named(default_config, schema):
    cfg = copy.deepcopy(default_config) | {"sead": 3}
    with pytest.raises(ConfigError, match=r"unknown config key 'sead'"):
        validate_config(cfg, schema)


def test_wrong_type_is_named(default_config, schema):
    cfg = copy.deepcopy(default_config)
    cfg["surveys"]["decals"]["stamp_px"] = "sixty-four"
    with pytest.raises(ConfigError, match=r"surveys\.decals\.stamp_px.*not of type 'integer'"):
        validate_config(cfg, schema)


def test_impossible_value_is_named(default_config, schema):
    cfg = copy.deepcopy(default_config)
    cfg["shard_size"] = 0
    with pytest.raises(ConfigError, match=r"'shard_size'.*minimum"):
        validate_config(cfg, schema)


def test_unknown_band_is_rejected(default_config, schema):
    cfg = copy.deepcopy(default_config)
    cfg["surveys"]["decals"]["bands"] = ["g", "R"]
    with pytest.raises(ConfigError, match=r"surveys\.decals\.bands\.1"):
        validate_config(cfg, schema)


def test_missing_band_entry_is_named(default_config):
    from galmap.core.surveys import Survey

    cfg = copy.deepcopy(default_config["surveys"]["decals"])
    del cfg["depth_mag"]["z"]
    with pytest.raises(ValueError, match=r"surveys\.decals\.depth_mag has no entry for band\(s\) z"):
        Survey.from_config("decals", cfg)


def test_bad_yaml_is_reported(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, SCHEMA)


def test_yaml_is_loaded_safely(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("seed: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(evil)


def test_per_survey_preprocessing(default_config, schema):
    from galmap.preprocess.settings import survey_params

    pre = default_config["preprocess"]
    euclid = survey_params(pre, "euclid")
    assert euclid["smooth_fwhm_px"] == pre["surveys"]["euclid"]["smooth_fwhm_px"] != pre["smooth_fwhm_px"]
    assert "surveys" not in euclid and survey_params(euclid, "euclid") == euclid
    assert survey_params(pre, "decals") == {k: v for k, v in pre.items() if k != "surveys"}
    cfg = copy.deepcopy(default_config)
    cfg["preprocess"]["surveys"]["hsc"] = {"smooth_fwhm_px": 3.0}
    with pytest.raises(ConfigError, match=r"'preprocess\.surveys' names hsc"):
        validate_config(cfg, schema)
    cfg = copy.deepcopy(default_config)
    cfg["preprocess"]["surveys"]["euclid"]["smooth_fwhm"] = 3.0
    with pytest.raises(ConfigError, match="smooth_fwhm"):
        validate_config(cfg, schema)


def test_cross_references_are_checked(default_config, schema):
    cfg = copy.deepcopy(default_config)
    cfg["structure"]["survey"] = "hsc"
    with pytest.raises(ConfigError, match=r"'structure\.survey' names survey 'hsc'"):
        validate_config(cfg, schema)
    cfg = copy.deepcopy(default_config)
    cfg["structure"]["morph_band"] = "VIS"
    with pytest.raises(ConfigError, match=r"'structure\.morph_band' is 'VIS'"):
        validate_config(cfg, schema)


def _schema_default_mismatches(node: dict, values: dict, path: str = "") -> list[str]:
    """Keys of ``values`` whose schema default differs from the value (objects are walked, not compared)."""
    out = []
    for key, sub in node.get("properties", {}).items():
        if key not in values:
            continue
        where = f"{path}{key}"
        if sub.get("type") == "object" and isinstance(values[key], dict):
            out += _schema_default_mismatches(sub, values[key], where + ".")
        elif "default" in sub and sub["default"] != values[key]:
            out.append(f"{where}: schema {sub['default']!r}, config.yaml {values[key]!r}")
    return out


def test_schema_defaults_are_the_default_config(schema):
    """A key left out of a config gets what the default run uses: the schema's defaults equal config.yaml's values."""
    assert _schema_default_mismatches(schema, load_yaml(REPO / "config" / "config.yaml")) == []
    # the walk does compare: a changed value is found
    changed = load_yaml(REPO / "config" / "config.yaml")
    changed["superres"]["sample_steps"] += 1
    assert _schema_default_mismatches(schema, changed) == [
        f"superres.sample_steps: schema {changed['superres']['sample_steps'] - 1}, "
        f"config.yaml {changed['superres']['sample_steps']}"
    ]
