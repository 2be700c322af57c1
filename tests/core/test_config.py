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


# ------------------------------------------------------------------------------------------------- overlays


def test_merge_is_snakemakes_merge_of_config_files():
    """Mappings merge key by key, anything else (a list, a null) replaces: as Snakemake merges --configfile files."""
    from snakemake.utils import update_config

    from galmap.core.config import merge

    base = {"a": 1, "b": {"c": [1, 2], "d": {"e": 1, "f": 2}}, "g": {"h": 1}}
    over1 = {"b": {"c": [3], "d": {"e": None}}, "g": 5, "new": {"x": 1}}
    over2 = {"b": {"d": {"f": 7}}, "a": None}
    expected = copy.deepcopy(base)
    update_config(expected, over1)
    update_config(expected, over2)
    assert merge(base, over1, over2) == expected
    assert expected == {"a": None, "b": {"c": [3], "d": {"e": None, "f": 7}}, "g": 5, "new": {"x": 1}}
    assert base["b"]["c"] == [1, 2]  # the inputs are not changed


def test_a_null_removes_a_key_and_the_schema_default_returns(schema):
    from galmap.core.config import merge, remove_nulls, resolve_config

    default = load_yaml(REPO / "config" / "config.yaml")
    assert remove_nulls({"a": None, "b": {"c": None, "d": [None]}}) == {"b": {"d": [None]}}
    overlay = {"surveys": {"sdss": None, "halpha": None}, "vae": {"batch_size": None, "learning_rate": 0.01}}
    cfg = resolve_config(merge(default, overlay), schema, default)
    assert sorted(cfg["surveys"]) == ["bass", "decals", "euclid", "mzls"]
    assert cfg["vae"]["batch_size"] == 32 and cfg["vae"]["learning_rate"] == 0.01  # the schema's default; the overlay's
    assert cfg["seed"] == default["seed"] and cfg["mock"] == default["mock"]  # the rest is the default's
    # halpha's surveys are the default's, not the user's: the stage is skipped rather than the run stopped
    from galmap.data.plan import stage_plan

    assert "halpha.input_survey 'sdss'" in stage_plan(cfg)["halpha"]
    # a survey named by a key the user changes is checked (a typo stops the run)
    with pytest.raises(ConfigError, match=r"'halpha\.input_survey' names survey 'sdsss'"):
        resolve_config(merge(default, overlay, {"halpha": {"input_survey": "sdsss"}}), schema, default)
    # removing a survey that a per-survey setting names: the message says how to remove that too
    with pytest.raises(ConfigError, match=r"preprocess: \{surveys: \{euclid: null\}\}"):
        resolve_config(merge(default, {"surveys": {"euclid": None}}), schema, default)
    both = {"surveys": {"euclid": None}, "preprocess": {"surveys": {"euclid": None}}}
    assert "euclid" not in resolve_config(merge(default, both), schema, default)["surveys"]


def test_a_one_key_overlay_is_the_default_with_that_key(tmp_path):
    one = tmp_path / "one_key.yaml"
    one.write_text("vae: {latent_dim: 16}\n")
    cfg = load_config(one, SCHEMA)
    default = load_config(REPO / "config" / "config.yaml", SCHEMA)
    assert cfg["vae"]["latent_dim"] == 16
    assert cfg == default | {"vae": default["vae"] | {"latent_dim": 16}}
    # files merge in order; without the default a one-key file is incomplete, as Snakemake's --replace-workflow-config
    two = tmp_path / "two.yaml"
    two.write_text("vae: {latent_dim: 8, batch_size: 4}\nseed: 3\n")
    cfg = load_config([one, two], SCHEMA)
    assert (cfg["vae"]["latent_dim"], cfg["vae"]["batch_size"], cfg["seed"]) == (8, 4, 3)
    with pytest.raises(ConfigError, match="'seed' is a required property"):
        load_config(one, SCHEMA, default=None)


def test_shipped_overlays_hold_only_what_differs_from_the_default():
    """config/test.yaml and config/paper.yaml are trimmed: no value in them is the default's already."""
    default = load_yaml(REPO / "config" / "config.yaml")

    def same(values, base, path=""):
        out = []
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                out += same(value, base[key], f"{path}{key}.")
            elif key in base and base[key] == value:
                out.append(path + key)
        return out

    for name in ("test.yaml", "paper.yaml"):
        assert same(load_yaml(REPO / "config" / name), default) == [], name
    paper = load_config(REPO / "config" / "paper.yaml", SCHEMA)
    assert paper["data"]["source"] == "legacysurvey" and "mock" not in paper  # the mock's settings: mock only
    assert paper["surveys"]["decals"]["stamp_px"] == 128 and paper["surveys"]["decals"]["psf_beta"] == 3.5


def test_mock_settings_are_not_checked_for_real_data(schema):
    """The mock section applies to data.source: mock only: for real data it is neither checked nor kept."""
    from galmap.core.config import merge, resolve_config

    default = load_yaml(REPO / "config" / "config.yaml")
    odd = {"mock": {"volunteers": {"label_survey": "hsc"}}}
    with pytest.raises(ConfigError, match=r"'mock\.volunteers\.label_survey' names survey 'hsc'"):
        resolve_config(merge(default, odd), schema, default)
    local = {"data": {"source": "local", "local": {"path": "cutouts"}}}
    assert "mock" not in resolve_config(merge(default, odd, local), schema, default)
