"""The preprocessing settings of each survey: a light module (no image libraries), read by the workflow too."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def survey_params(params: Mapping[str, Any], survey: str) -> dict[str, Any]:
    """The ``preprocess`` settings for ``survey``'s images: the shared ones, ``params["surveys"][survey]`` on top.

    The result has no ``surveys`` key, so applying this twice changes nothing.
    """
    shared = {k: v for k, v in params.items() if k != "surveys"}
    return shared | dict((params.get("surveys") or {}).get(survey, {}))
