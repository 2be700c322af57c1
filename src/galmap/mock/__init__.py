"""The mock survey: a simulated sky that knows the truth.

:mod:`galmap.mock.population` draws the galaxies (``truth.parquet``),
:mod:`galmap.mock.volunteers` simulates Galaxy Zoo votes (``labels.parquet``) and
:mod:`galmap.mock.render` renders the same galaxies in every configured survey
with GalSim.
"""
