"""Snakemake script: draw one of the paper's figures (params.figure) from the rule's named inputs."""

from galmap.core.joblog import job_log
from galmap.figures.draw import make_figure

snakemake = snakemake  # noqa: F821,PLW0127 - injected by Snakemake


def _value(name, value):
    """Lists for ``*_paths`` inputs; one path or None (an optional input) otherwise."""
    if name.endswith("_paths"):
        return list(value)
    return value if isinstance(value, str) else next(iter(value), None)


with job_log(snakemake.log[0]):
    inputs = {name: _value(name, snakemake.input[name]) for name in snakemake.input.keys()}
    make_figure(snakemake.params.figure, inputs, snakemake.output.pdf, snakemake.output.png)
