"""The mock's component colours (``galmap.mock.population.TEMPLATE_COLOURS``), computed from documented SEDs.

Each template SED of Coleman, Wu & Weedman (1980), as extended by Bolzonella, Miralles & Pelló (2000) and
shipped with GalSim (``galsim/share/SEDs/CWW_{E,Sbc,Scd,Im}_ext.sed``, f_lambda), is redshifted to ``z``
and integrated through the bandpasses of the ``speclite`` package: DECam g, r, z (``decam2014-*``, the
mock's reference system, shared by its DECaLS and SDSS renders), SDSS u and i (``sdss2010-*``: only the
SDSS survey renders them) and Euclid VIS. The script prints each template's ``m_band - m_r`` (AB, r: DECam)
at the redshifts given (default 0, 0.03, 0.05, 0.07, 0.10, 0.15) and, for comparison with the literature,
the SDSS-system g - r and u - r. ``speclite`` is not a dependency of galmap:
install it beside galmap (``.venv/bin/pip install speclite``) to run this script.

Usage: ``PYTHONPATH=src python experiments/mock_colours.py [z ...]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import galsim
import numpy as np

TEMPLATES = ("E", "Sbc", "Scd", "Im")
BANDS = ("u", "g", "r", "i", "z")


def template_colours(z: float) -> dict[str, dict[str, float]]:
    """``m_band - m_r`` (AB, r: DECam) of each CWW template at ``z``: SDSS u, i; DECam g, z; VIS; SDSS g-r, u-r."""
    from speclite import filters

    mock = filters.load_filters("sdss2010-u", "decam2014-g", "decam2014-r", "sdss2010-i", "decam2014-z", "Euclid-VIS")
    sdss = filters.load_filters("sdss2010-u", "sdss2010-g", "sdss2010-r")
    share = Path(galsim.__file__).parent / "share" / "SEDs"
    out = {}
    for name in TEMPLATES:
        wave, flam = np.loadtxt(share / f"CWW_{name}_ext.sed", unpack=True)
        mags = mock.get_ab_magnitudes(flam, wave * (1 + z))[0]
        m = dict(zip((*BANDS, "VIS"), (float(mags[c]) for c in mags.colnames), strict=True))
        s = sdss.get_ab_magnitudes(flam, wave * (1 + z))[0]
        out[name] = {b: round(m[b] - m["r"], 3) for b in (*BANDS, "VIS")}
        out[name]["sdss_g_minus_r"] = round(float(s[1] - s[2]), 3)
        out[name]["sdss_u_minus_r"] = round(float(s[0] - s[2]), 3)
    return out


def main(argv: list[str]) -> None:
    redshifts = [float(a) for a in argv] or [0.0, 0.03, 0.05, 0.07, 0.10, 0.15]
    print("| z | template | u−r | g−r | i−r | z−r | VIS−r | SDSS g−r | SDSS u−r |")
    print("|---|---|---|---|---|---|---|---|---|")
    for z in redshifts:
        for name, c in template_colours(z).items():
            vals = " | ".join(f"{c[b]:+.3f}" for b in ("u", "g", "i", "z", "VIS"))
            print(f"| {z:.2f} | {name} | {vals} | {c['sdss_g_minus_r']:+.3f} | {c['sdss_u_minus_r']:+.3f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
