"""Physical and non-parametric parameters of each galaxy, from the structure stage's tables.

A parameter name is one of

* a colour ``"<band1>-<band2>"`` (``g-r``, ``r-z``): difference of the Sérsic
  magnitudes (AB mag) of the two bands;
* ``sersic_n`` (Sérsic index), ``re_arcsec`` (half-light semi-major axis, arcsec),
  ``q`` (axis ratio), from the Sérsic fit (shape shared by all bands);
* a statmorph measurement of the morphometry table (``gini``, ``m20``,
  ``concentration``, ``asymmetry``, ``smoothness``, ...).

A galaxy's parameters are *usable* when every one is finite, its Sérsic fit was
made (flag bits ``no_data`` and "skipped" unset) and statmorph's flag is below 2
("bad" or worse); :func:`parameter_table` says why for the others.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from galmap.structure.flags import MORPH_UNUSABLE, SERSIC_UNUSABLE

SERSIC_PARAMETERS = {"sersic_n": "n", "re_arcsec": "re_arcsec", "q": "q"}
#: The statmorph quantities the structure stage measures (columns of ``morphometry.parquet``).
MORPH_PARAMETERS = [
    "concentration", "asymmetry", "smoothness", "gini", "m20", "gini_m20_bulge",
    "gini_m20_merger", "rpetro_circ", "rhalf_circ", "sn_per_pixel",
]  # fmt: skip
#: Parameters that are positive scales, modelled as log10 by the flow.
LOG_PARAMETERS = frozenset({"sersic_n", "re_arcsec"})


def colour_bands(name: str) -> tuple[str, str] | None:
    """``("g", "r")`` for a colour name ``"g-r"``, else None."""
    parts = name.split("-")
    if len(parts) == 2 and all(parts):
        return parts[0], parts[1]
    return None


def check_names(names: Sequence[str], bands: Sequence[str]) -> None:
    """Raise ``ValueError`` for a name that is neither a colour of ``bands``, a Sérsic nor a statmorph quantity."""
    for name in names:
        col = colour_bands(name)
        if col is not None:
            missing = [b for b in col if b not in bands]
            if missing:
                raise ValueError(f"parameter {name!r}: band(s) {', '.join(missing)} not in {', '.join(bands)}")
        elif name not in SERSIC_PARAMETERS and name not in MORPH_PARAMETERS:
            known = ", ".join([*SERSIC_PARAMETERS, *MORPH_PARAMETERS])
            raise ValueError(f"unknown parameter {name!r}: a colour such as 'g-r', or one of {known}")


def parameter_table(
    sersic: pd.DataFrame, morphometry: pd.DataFrame, names: Sequence[str]
) -> tuple[pd.DataFrame, pd.Series]:
    """One row per galaxy: ``id`` and the parameters ``names``; and why unusable galaxies are.

    Returns ``(table, reasons)``: ``reasons`` is indexed by id and holds an empty
    string for usable galaxies.
    """
    ids = pd.Index(pd.unique(pd.concat([sersic["id"], morphometry["id"]]).astype(str)), name="id")
    table = pd.DataFrame(index=ids)
    reasons = pd.Series("", index=ids, dtype=object)
    shape = sersic.drop_duplicates("id").set_index("id")
    mags = sersic.pivot_table(index="id", columns="band", values="mag", aggfunc="first", dropna=False)
    morph = morphometry.drop_duplicates("id").set_index("id")
    flag = shape["flag"].reindex(ids)
    bad = flag.isna() | ((flag.fillna(0).astype(np.int64) & SERSIC_UNUSABLE) > 0)
    reasons[bad] = "no usable Sérsic fit"
    uses_morph = any(n in MORPH_PARAMETERS for n in names)
    if uses_morph:
        mflag = morph["flag"].reindex(ids)
        mbad = (mflag.isna() | (mflag >= MORPH_UNUSABLE)) & (reasons == "")
        reasons[mbad] = "statmorph flag >= 2 (bad or catastrophic)"
    for name in names:
        col = colour_bands(name)
        if col is not None:
            table[name] = (mags[col[0]] - mags[col[1]]).reindex(ids).to_numpy(dtype=np.float64)
        elif name in SERSIC_PARAMETERS:
            table[name] = shape[SERSIC_PARAMETERS[name]].reindex(ids).to_numpy(dtype=np.float64)
        else:
            table[name] = morph[name].reindex(ids).to_numpy(dtype=np.float64)
        nonfinite = ~np.isfinite(table[name].to_numpy()) & (reasons == "").to_numpy()
        reasons[nonfinite] = f"{name} is not finite"
        if name in LOG_PARAMETERS:
            nonpos = (table[name].to_numpy() <= 0) & (reasons == "").to_numpy()
            reasons[nonpos] = f"{name} is not positive"
    return table.reset_index(), reasons
