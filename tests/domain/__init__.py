"""Tests of the domain stage."""
