"""Realism stage: mock galaxies drawn as Galaxy Zoo DECaLS images, compared with real ones.

Modules: :mod:`~galmap.realism.render` (the Galaxy Zoo DECaLS images of mock
galaxies), :mod:`~galmap.realism.imagestats` (image statistics of 8-bit colour
images), :mod:`~galmap.realism.c2st` (classifier two-sample test and KS
distances), :mod:`~galmap.realism.jobs` (files in, files out).
"""

__all__ = ["c2st", "imagestats", "jobs", "render"]
