"""Tests of the mock survey."""
