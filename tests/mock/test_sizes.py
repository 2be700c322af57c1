"""Galaxy sizes: cosmology, the luminosity function's redshifts, Shen et al. (2003) sizes, the GZ DECaLS cut."""

import numpy as np
import pytest

from galmap.mock.neighbours import NeighbourCounts
from galmap.mock.sizes import (
    PETRO_THETA_MIN_ARCSEC,
    RE_MAX_ARCSEC,
    distance_modulus,
    draw_redshift,
    draw_sizes,
    kpc_per_arcsec,
    median_size_kpc,
    observed_petro_theta,
    petrosian_ratio,
)


def test_cosmology_matches_published_distances():
    """Flat ΛCDM (70, 0.3) at z = 0.1: D_L = 460 Mpc (DM 38.31), 1.844 kpc/arcsec (Wright 2006's calculator)."""
    assert distance_modulus(np.array([0.1]))[0] == pytest.approx(38.31, abs=0.01)
    assert kpc_per_arcsec(np.array([0.1]))[0] == pytest.approx(1.844, abs=0.005)


@pytest.mark.parametrize(("n", "ratio"), [(1.0, 2.16), (4.0, 1.82)])
def test_petrosian_ratio_of_sersic_profiles(n, ratio):
    """R_P(η=0.2) / R_e: 2.16 for an exponential, 1.82 for de Vaucouleurs (Graham et al. 2005, fig. 1)."""
    assert petrosian_ratio(n) == pytest.approx(ratio, abs=0.02)


def test_redshift_grows_with_magnitude():
    rng = np.random.default_rng(0)
    z_bright = draw_redshift(np.full(2000, 14.5), rng)
    z_faint = draw_redshift(np.full(2000, 17.7), rng)
    assert 0.02 < np.median(z_bright) < 0.05  # an L* galaxy (M = -21.2) at r = 14.5 lies at z = 0.04
    assert 0.10 < np.median(z_faint) < 0.16  # the SDSS main sample's limit: median z 0.10 overall
    assert np.median(z_faint) > 2.5 * np.median(z_bright)


def test_shen_relations_at_their_pivot():
    """At M0 = -20.52 the late-type median is 10^(-0.4·0.21·M0 + 0.16·log10(2) - 1.31) kpc; early types are steeper."""
    late = median_size_kpc(np.array([-20.52]), np.array([False]))[0]
    assert late == pytest.approx(10 ** (0.084 * 20.52 + 0.32 * np.log10(2) - 1.31), rel=1e-6)
    m = np.array([-20.0, -22.0])
    early = median_size_kpc(m, np.ones(2, bool))
    late2 = median_size_kpc(m, np.zeros(2, bool))
    assert early[1] / early[0] > late2[1] / late2[0]


def test_draws_pass_the_selection_and_brighter_galaxies_are_larger():
    rng = np.random.default_rng(1)
    mags = np.repeat([15.0, 17.5], 500)
    z, re, m = draw_sizes(mags, np.zeros(1000, bool), np.ones(1000), rng)
    assert np.array_equal(m, mags)  # without draw_mag, failures are drawn again at their magnitude
    assert (observed_petro_theta(re, np.ones(1000)) > PETRO_THETA_MIN_ARCSEC).all()
    assert (re <= RE_MAX_ARCSEC).all()
    assert np.median(re[:500]) > 1.5 * np.median(re[500:])
    assert np.median(z[:500]) < np.median(z[500:])


def test_unselectable_galaxy_is_named():
    """A galaxy as bright as r = 8 is always larger than the stamps: a clear error names it."""
    with pytest.raises(ValueError, match=r"galaxy 1 \(r = 8.00\)"):
        draw_sizes(np.array([16.0, 8.0]), np.zeros(2, bool), np.ones(2), np.random.default_rng(2))


def test_redrawn_magnitudes_are_those_of_the_selected_sample():
    """With ``draw_mag``, a galaxy failing the selection gets a new magnitude too, so the selected sample's
    magnitudes are the counts times the selection: faint ellipticals are too small for petro_theta > 3'', bright
    disks too large for the stamps; the counts alone would keep both (and no selected galaxy fails)."""
    law = NeighbourCounts.from_config(None).galaxies.within(14.5, 17.8)
    counts_median = np.median(law.sample(np.random.default_rng(4), 20000))
    counts_bright = float((law.sample(np.random.default_rng(5), 20000) < 15.5).mean())  # about 4 %
    n = 4000
    for early, index in ((True, 4.0), (False, 1.0)):
        rng = np.random.default_rng(3)
        first = law.sample(rng, n)
        z, re, m = draw_sizes(first, np.full(n, early), np.full(n, index), rng, draw_mag=law.sample)
        assert (observed_petro_theta(re, np.full(n, index)) > PETRO_THETA_MIN_ARCSEC).all()
        assert (re <= RE_MAX_ARCSEC).all() and m.min() >= 14.5 and m.max() <= 17.8
        assert not np.array_equal(m, first)
        if early:
            assert 0.3 < (m > counts_median).mean() < 0.46  # counts alone: 0.5
        else:
            assert (m < 15.5).mean() < 0.7 * counts_bright
