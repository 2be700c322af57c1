"""Tests of galmap.core."""
