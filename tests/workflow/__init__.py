"""Tests of the Snakemake workflow as a whole."""
