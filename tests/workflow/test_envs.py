"""Conda environments (``envs/*.yaml``, ``--use-conda``): every rule has one, and it holds what the rule imports.

Conda's channels cannot be reached from the test machines, so the environments are checked statically: each
rule's imports are derived from the script it runs, following ``galmap`` imports transitively (only the
functions the script uses, plus the module-level imports of every module loaded), mapped to distributions with
the installed packages' metadata, and compared with the rule's env file; versions must agree with pyproject.toml.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from tests.conftest import REPO

SRC = REPO / "src"
RULES = REPO / "workflow" / "rules"
ENV_NAMES = {"ENV_DATA": "data", "ENV_STRUCTURE": "structure", "ENV_ML": "ml", "ENV_FIGURES": "figures"}
# Calls that need a package the code never imports by name (pandas reads and writes Parquet through pyarrow).
IMPLICIT = {"read_parquet": "pyarrow", "to_parquet": "pyarrow"}


# ---------------------------------------------------------------------------------------------------- imports


def _module_path(module: str) -> Path | None:
    """The source file of a galmap module (``galmap.mock`` -> ``src/galmap/mock/__init__.py``), None if absent."""
    base = SRC.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


@cache
def _tree(module: str) -> ast.Module:
    return ast.parse(_module_path(module).read_text())


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The absolute module name of a ``from ... import`` in ``module``."""
    if not node.level:
        return node.module or ""
    package = module if _module_path(module).name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _statements(nodes, *, enter_defs: bool):
    """Every node under ``nodes``; into function bodies only if ``enter_defs`` (they run only when called)."""
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if _is_type_checking(node):
            continue
        yield node
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) and not enter_defs:
            # decorators and defaults run at definition time
            stack.extend(getattr(node, "decorator_list", []))
            stack.extend(d for d in (*node.args.defaults, *node.args.kw_defaults) if d is not None)
            continue
        stack.extend(ast.iter_child_nodes(node))


class _Needs:
    """Third-party top-level imports and implicit packages needed to run some galmap code."""

    def __init__(self) -> None:
        self.imports: set[str] = set()
        self.implicit: set[str] = set()
        self._seen: set[tuple[str, str | None]] = set()

    def add_nodes(self, module: str, nodes, *, enter_defs: bool) -> None:
        """Record what ``nodes`` (code of ``module``, or a script when module is "") import and call."""
        local = _top_level_defs(module) if module else {}
        for node in _statements(nodes, enter_defs=enter_defs):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self._import(alias.name, None)
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(module, node) if node.level else node.module or ""
                for alias in node.names:
                    self._import(source, alias.name)
            elif isinstance(node, ast.Attribute) and node.attr in IMPLICIT:
                self.implicit.add(IMPLICIT[node.attr])
            elif isinstance(node, ast.List | ast.Tuple):  # [sys.executable, "-m", "dvc", ...] runs a module
                words = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
                for flag, target in zip(words, words[1:], strict=False):
                    if flag == "-m" and isinstance(target, str):
                        self.imports.add(target.partition(".")[0])
            elif isinstance(node, ast.Name) and node.id in local and enter_defs:
                self.add_symbol(module, node.id)  # a helper (or table of helpers) of the same module it uses

    def _import(self, module: str, name: str | None) -> None:
        top = module.partition(".")[0]
        if top != "galmap":
            self.imports.add(top)
            return
        for i in range(1, module.count(".") + 2):  # importing galmap.a.b runs galmap/__init__, galmap/a/__init__
            self.add_module(".".join(module.split(".")[:i]))
        if name is None:
            return
        if _module_path(f"{module}.{name}"):  # from galmap import submodule
            self.add_module(f"{module}.{name}")
        else:
            self.add_symbol(module, name)

    def add_module(self, module: str) -> None:
        """Importing ``module``: its module-level code (imports, class bodies, decorators), not function bodies."""
        if (module, None) in self._seen:
            return
        self._seen.add((module, None))
        tree = _tree(module)
        self.add_nodes(module, tree.body, enter_defs=False)

    def add_symbol(self, module: str, name: str) -> None:
        """Using ``module.name``: the module, plus the body of that function or class and the helpers it calls."""
        self.add_module(module)
        if (module, name) in self._seen:
            return
        self._seen.add((module, name))
        node = _top_level_defs(module).get(name)
        if node is not None:
            self.add_nodes(module, [node], enter_defs=True)


@cache
def _top_level_defs(module: str) -> dict[str, ast.AST]:
    """A module's top-level functions, classes and assigned names (e.g. a dict of functions by name)."""
    defs: dict[str, ast.AST] = {}
    for node in _tree(module).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defs[node.name] = node
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defs.update({t.id: node for t in targets if isinstance(t, ast.Name)})
    return defs


@cache
def _distributions() -> dict[str, list[str]]:
    """Top-level import name -> the installed distributions that provide it (e.g. yaml -> PyYAML)."""
    return packages_distributions()


@cache
def script_needs(script: Path) -> frozenset[str]:
    """Distributions (canonical names) that running ``script`` imports, galmap's own code followed transitively."""
    needs = _Needs()
    needs.add_nodes("", ast.parse(script.read_text()).body, enter_defs=True)
    dists = {canonicalize_name(d) for d in needs.implicit}
    for name in needs.imports - set(sys.stdlib_module_names) - {"__future__"}:
        found = _distributions().get(name)
        assert found, f"{script.name} imports {name!r}, which no installed distribution provides"
        dists.add(canonicalize_name(found[0]))
    return frozenset(dists)


# ---------------------------------------------------------------------------------------------- rules, envs


@cache
def rules() -> dict[str, dict]:
    """Every rule of workflow/rules/*.smk: its file, conda env name (the ENV_* constant), script path and threads."""
    found = {}
    for smk in sorted(RULES.glob("*.smk")):
        blocks = re.split(r"^rule (\w+):\n", smk.read_text(), flags=re.M)
        for name, body in zip(blocks[1::2], blocks[2::2], strict=True):
            body = re.split(r"^\S", body, maxsplit=1, flags=re.M)[0]  # up to the next top-level statement
            conda = re.search(r"^\s+conda:\n\s+(\w+)\s*$", body, flags=re.M)
            script = re.search(r'^\s+script:\n\s+"([^"]+)"', body, flags=re.M)
            threads = re.search(r"^\s+threads: (\d+)\s*$", body, flags=re.M)
            found[name] = {
                "file": smk.name,
                "env": conda.group(1) if conda else None,
                "script": str((RULES / script.group(1)).resolve()) if script else None,
                "threads": int(threads.group(1)) if threads else None,
                "resources": set(re.findall(r"^\s+(\w+)=", body.partition("resources:")[2], flags=re.M)),
            }
    return found


def env_constants() -> dict[str, Path]:
    """The ENV_* names of common.smk and the env files they point to (relative to workflow/rules/)."""
    text = (RULES / "common.smk").read_text()
    return {m[1]: (RULES / m[2]).resolve() for m in re.finditer(r'^(ENV\w*) = "([^"]+)"', text, flags=re.M)}


def conda_env(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(conda packages, pip packages) of an env file, each canonical name -> version specifier."""
    env = yaml.safe_load(path.read_text())
    conda, pip = {}, {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for req in dep["pip"]:
                r = Requirement(req)
                pip[canonicalize_name(r.name)] = str(r.specifier)
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(.*)", dep)
        conda[canonicalize_name(m[1])] = m[2].replace(" ", "")
    return conda, pip


def pyproject_requirements() -> tuple[dict[str, str], str]:
    """pyproject.toml's dependencies (canonical name -> specifier) and requires-python."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = {canonicalize_name(Requirement(d).name): str(Requirement(d).specifier) for d in project["dependencies"]}
    return deps, project["requires-python"]


ENV_PATHS = env_constants()

# ------------------------------------------------------------------------------------------------------ tests


def test_the_four_env_files_and_their_names():
    assert env_constants() == {k: REPO / "envs" / f"{v}.yaml" for k, v in ENV_NAMES.items()}
    assert sorted(p.name for p in (REPO / "envs").glob("*.yaml")) == sorted(f"{v}.yaml" for v in ENV_NAMES.values())


def test_every_rule_has_a_conda_env_threads_and_resources():
    found = rules()
    assert len(found) > 30
    for name, rule in found.items():
        assert rule["env"] in ENV_NAMES, f"rule {name} ({rule['file']}): conda: {rule['env']}, not one of ENV_*"
        assert rule["script"] is None or Path(rule["script"]).is_file(), f"rule {name}: script {rule['script']}"
        assert rule["threads"], f"rule {name} ({rule['file']}) declares no threads"
        assert {"mem_mb", "runtime"} <= rule["resources"], f"rule {name} ({rule['file']}): {rule['resources']}"


def _exact(spec: str) -> str | None:
    """The version of an exact pin ``==X`` (conda's and pip's spelling), else None."""
    m = re.fullmatch(r"==([0-9][0-9A-Za-z.]*)", spec)
    return m[1] if m else None


@pytest.mark.parametrize("name", list(ENV_NAMES.values()))
def test_env_file_is_well_formed_pinned_and_agrees_with_pyproject(name):
    """Channels conda-forge only; every package, python and pip included, pinned exactly (``==X``) to a version
    inside pyproject.toml's range; torch (where an env has it) from pip, pinned as in pyproject.toml."""
    path = REPO / "envs" / f"{name}.yaml"
    env = yaml.safe_load(path.read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    conda, pip = conda_env(path)
    deps, requires_python = pyproject_requirements()
    for dist, spec in {**conda, **pip}.items():
        assert _exact(spec), f"{name}.yaml: {dist}{spec} is not an exact pin (==X)"
    assert "python" in conda and "pip" in conda
    python = _exact(conda.pop("python"))
    assert SpecifierSet(requires_python).contains(python), f"{name}: python=={python} vs requires-python"
    conda.pop("pip")
    assert not set(conda) & set(pip), f"{name}: in both conda and pip: {set(conda) & set(pip)}"
    for dist, spec in {**conda, **pip}.items():
        assert dist in deps, f"{name}.yaml: {dist} is not a dependency in pyproject.toml"
        assert SpecifierSet(deps[dist]).contains(_exact(spec)), f"{name}.yaml: {dist}{spec} vs pyproject {deps[dist]}"
    assert "torch" not in conda  # the CPU/CUDA wheel comes from pip, pinned, as for the project
    if "torch" in pip:  # the data env has no PyTorch
        assert pip["torch"] == deps["torch"], f"{name}.yaml: torch{pip['torch']} vs pyproject {deps['torch']}"


def test_every_env_pins_a_package_to_the_same_version():
    """Two rules never see two versions of one package (a model written by one env is read by another)."""
    seen: dict[str, dict[str, str]] = {}
    for name in ENV_NAMES.values():
        conda, pip = conda_env(REPO / "envs" / f"{name}.yaml")
        for dist, spec in {**conda, **pip}.items():
            seen.setdefault(dist, {})[name] = spec
    differ = {dist: by_env for dist, by_env in seen.items() if len(set(by_env.values())) > 1}
    assert not differ, differ


def test_lock_files_are_conda_explicit_specs():
    """``envs/<name>.linux-64.pin.txt`` (Snakemake's per-platform pin files), where present: an @EXPLICIT list of
    package URLs of the env's channel. None is committed yet (no conda channel is reachable where they are made:
    docs/cluster.md); the check stands for when one is."""
    for path in sorted((REPO / "envs").glob("*.pin.txt")):
        assert re.fullmatch(r"(\w+)\.linux-64\.pin\.txt", path.name) and path.name.split(".")[0] in ENV_NAMES.values()
        lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
        assert lines[0] == "@EXPLICIT", path.name
        assert all(ln.startswith("https://conda.anaconda.org/conda-forge/") for ln in lines[1:]), path.name


def test_the_test_extra_covers_what_the_tests_import():
    """Every third-party package the tests import is a dependency or in the ``test`` extra of pyproject.toml."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {canonicalize_name(Requirement(d).name) for d in project["dependencies"]}
    declared |= {canonicalize_name(Requirement(d).name) for d in project["optional-dependencies"]["test"]}
    needs = _Needs()
    for path in sorted((REPO / "tests").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                needs.imports |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                needs.imports.add(node.module.partition(".")[0])
    third_party = needs.imports - set(sys.stdlib_module_names) - {"__future__", "galmap", "tests"}
    missing = {}
    for name in sorted(third_party):
        dists = _distributions().get(name)
        assert dists, f"the tests import {name!r}, which no installed distribution provides"
        if not {canonicalize_name(d) for d in dists} & declared:
            missing[name] = dists
    assert not missing, f"imported by the tests but not declared in pyproject.toml: {missing}"


@pytest.mark.parametrize("rule", sorted(name for name, info in rules().items() if info["script"]))
def test_each_rule_env_covers_what_its_script_imports(rule):
    info = rules()[rule]
    needed = script_needs(Path(info["script"])) - {"galmap"}
    conda, pip = conda_env(ENV_PATHS[info["env"]])
    missing = needed - set(conda) - set(pip)
    script = Path(info["script"]).name
    assert not missing, f"rule {rule} runs {script}, which imports {sorted(missing)} (not in its env {info['env']})"


def test_the_import_analysis_follows_galmap_and_can_fail():
    """The derivation sees through galmap: the VAE's training needs torch; the gather step does not."""
    assert "torch" in script_needs(REPO / "scripts" / "vae_train.py")
    assert "pyarrow" in script_needs(REPO / "scripts" / "gather_tables.py")
    assert "torch" not in script_needs(REPO / "scripts" / "gather_tables.py")
    assert "scikit-learn" in script_needs(REPO / "scripts" / "classify_rf.py")  # import sklearn -> scikit-learn
    assert "nflows" in script_needs(REPO / "scripts" / "flow_train.py")
    assert "matplotlib" in script_needs(REPO / "scripts" / "figure.py")
    assert script_needs(REPO / "scripts" / "dvc_push.py") == {"dvc"}  # runs `python -m dvc`


def test_a_missing_package_is_named(tmp_path, monkeypatch):
    """An env file without a package a rule imports fails the coverage check, naming the package."""
    text = (REPO / "envs" / "ml.yaml").read_text()
    line = next(ln for ln in text.splitlines(keepends=True) if ln.startswith("  - scikit-learn=="))
    (tmp_path / "ml.yaml").write_text(text.replace(line, ""))
    monkeypatch.setitem(ENV_PATHS, "ENV_ML", tmp_path / "ml.yaml")
    with pytest.raises(AssertionError, match="scikit-learn"):
        test_each_rule_env_covers_what_its_script_imports("classify_rf")
