"""Unrelated neighbours follow the configured number counts (galmap.mock.neighbours, issue 27)."""

import numpy as np
import pytest
from scipy.stats import kstest

from galmap.mock.neighbours import DEFAULTS, NeighbourCounts, PowerLawCounts, draw_neighbours
from galmap.mock.population import draw_population, seed_for
from galmap.mock.render import GalaxyModel


@pytest.fixture(scope="module")
def counts(default_config):
    return NeighbourCounts.from_config(default_config["mock"]["neighbours"])


def test_the_code_defaults_are_the_configured_counts(default_config):
    """Tests, benchmarks and experiments that build a GalaxyModel without counts draw the config's neighbours."""
    assert DEFAULTS == default_config["mock"]["neighbours"]


def _cdf(law: PowerLawCounts):
    grid = np.linspace(law.edges[0], law.edges[-1], 20001)
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (law.dn_dm(grid[1:]) + law.dn_dm(grid[:-1])) * np.diff(grid))])
    return lambda m: np.interp(m, grid, cum / cum[-1])


def test_default_counts_match_their_documented_anchors(counts):
    """The default galaxy law passes through the documented integral counts (docs/mock.md)."""
    g = counts.galaxies
    assert g.number(17.77) == pytest.approx(90, rel=0.05)  # SDSS main galaxy sample (Strauss et al. 2002)
    assert g.number(19.5) == pytest.approx(800, rel=0.05)  # DESI BGS Bright (Ruiz-Macias et al. 2020)
    # continuous at the break, faint slope 0.36 beyond it
    assert np.log10(g.dn_dm(24.0) / g.dn_dm(21.0)) == pytest.approx(3 * 0.36, abs=1e-9)
    assert g.segment_numbers().sum() == pytest.approx(g.number(24.5), rel=1e-3)
    # stars are a few per cent of the sources at high latitude
    assert 0.005 < counts.stars.number() / g.number() < 0.1


def test_a_range_of_the_counts_keeps_the_law(counts):
    """``within`` cuts the law to a magnitude range: same dN/dm there, draws only inside, following it."""
    g = counts.galaxies
    for lo, hi in ((14.5, 17.8), (17.0, 22.0)):
        part = g.within(lo, hi)
        grid = np.linspace(lo, hi, 50)
        assert np.allclose(part.dn_dm(grid), g.dn_dm(grid), rtol=1e-9)
        m = part.sample(np.random.default_rng(8), 20000)
        assert m.min() >= lo and m.max() <= hi
        assert kstest(m, _cdf(part)).pvalue > 1e-3
    # the central galaxies' range: 0.55 dex per magnitude puts about 8 % brighter than r = 16
    m = g.within(14.5, 17.8).sample(np.random.default_rng(9), 20000)
    expected = (10 ** (0.55 * 1.5) - 1) / (10 ** (0.55 * 3.3) - 1)
    assert (m < 16.0).mean() == pytest.approx(expected, abs=0.01)
    with pytest.raises(ValueError, match="not inside"):
        g.within(12.0, 17.8)


def test_drawn_magnitudes_follow_the_configured_counts(counts):
    """Many draws: the star fraction, the magnitudes (KS and counts in bins) and the positions follow the law."""
    rng = np.random.default_rng(5)
    nb = draw_neighbours(rng, counts, 40000, 10.0)
    star = np.array([n.star for n in nb])
    mag = np.array([n.mag_r for n in nb])
    n_s, n_g = counts.stars.number(), counts.galaxies.number()
    p = n_s / (n_s + n_g)
    assert abs(star.mean() - p) < 5 * np.sqrt(p * (1 - p) / len(nb))
    for law, m in ((counts.galaxies, mag[~star]), (counts.stars, mag[star])):
        assert kstest(m, _cdf(law)).pvalue > 1e-3
        bins = np.linspace(law.edges[0], law.edges[-1], 8)
        observed = np.histogram(m, bins)[0]
        expected = len(m) * np.diff(_cdf(law)(bins))
        ok = expected > 20
        assert np.all(np.abs(observed[ok] - expected[ok]) < 5 * np.sqrt(expected[ok]) + 2), (observed, expected)
    # a steeper law draws fainter magnitudes: the test can fail
    steep = PowerLawCounts((14.0, 24.5), (0.6,), 20.0, 1.0)
    assert kstest(steep.sample(rng, 5000), _cdf(counts.galaxies)).pvalue < 1e-3
    x = np.array([n.x for n in nb])
    assert kstest(x, "uniform", args=(-10.0, 20.0)).pvalue > 1e-3


def test_stamps_and_frames_hold_the_expected_numbers(default_config, counts):
    """The truth's n_neighbours is Poisson of the field's mean; a frame adds the rest of its area's mean."""
    cfg = default_config | {"mock": default_config["mock"] | {"n_galaxies": 3000}}
    pop = draw_population(cfg)
    field = 16.8
    lam = counts.expected(field**2)
    assert abs(pop["n_neighbours"].mean() - lam) < 5 * np.sqrt(lam / len(pop))
    assert pop["n_neighbours"].var() == pytest.approx(lam, rel=0.15)  # Poisson
    off = NeighbourCounts.from_config(default_config["mock"]["neighbours"] | {"enabled": False})
    assert off.expected(field**2) == 0.0
    # a frame three times the field: its extra sources are outside the field, their mean the rest of its area's
    frame, added = 3 * field, []
    rows = pop.iloc[:150].to_dict("records")
    for row in rows:
        model = GalaxyModel(row, 42, field, counts)
        inside = list(model.components.neighbour_xy)
        assert len(inside) == row["n_neighbours"]
        assert all(abs(x) <= field / 2 and abs(y) <= field / 2 for x, y in inside)
        added.append(model.fill_frame(frame))
        assert model.components.neighbour_xy[: len(inside)] == inside  # the stamp's neighbours are kept
        extra = model.components.neighbour_xy[len(inside) :]
        assert all(max(abs(x), abs(y)) >= field / 2 and max(abs(x), abs(y)) <= frame / 2 for x, y in extra)
    expected = counts.expected(frame**2 - field**2)
    assert abs(np.mean(added) - expected) < 5 * np.sqrt(expected / len(rows))
    # the same galaxy gets the same frame neighbours (seeded per galaxy)
    again = GalaxyModel(rows[0], 42, field, counts)
    again.fill_frame(frame)
    first = GalaxyModel(rows[0], 42, field, counts)
    first.fill_frame(frame)
    assert again.components.neighbour_xy == first.components.neighbour_xy
    assert seed_for(42, 0, 2, 1).uniform() != seed_for(42, 0, 2).uniform()  # the frame's stream is its own
