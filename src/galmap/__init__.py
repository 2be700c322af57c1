"""galmap: a reproducible analysis of galaxy images with AI.

The library behind the Snakemake workflow: everything that computes lives here
(mock survey, preprocessing, I/O); the workflow's rules and scripts only wire
these functions together.
"""

__version__ = "0.1.0"
