"""Tests of the data stage on real data (galmap.data)."""
