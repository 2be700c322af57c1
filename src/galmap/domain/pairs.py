"""The configured source -> target pairs of the domain stage (``domain.pairs``), without importing PyTorch.

Each pair names its target bands (which survey observes each band of the
source) and may override keys of ``domain.dann`` and ``domain.distill``; the
source classifier is the classification stage's CNN, shared by every pair.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def domain_pairs(domain: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The pairs of the config's ``domain`` section by name, in config order."""
    return {str(p["name"]): dict(p) for p in domain["pairs"]}


def pair_settings(domain: Mapping[str, Any], name: str, method: str) -> dict[str, Any]:
    """``domain.<method>`` (``dann`` or ``distill``) with pair ``name``'s overrides on top."""
    pair = domain_pairs(domain)[name]
    return dict(domain[method]) | dict(pair.get(method) or {})


def target_surveys(pair: Mapping[str, Any]) -> list[str]:
    """The surveys observing the pair's target bands, in band order, each once."""
    return list(dict.fromkeys(pair["target_bands"].values()))
