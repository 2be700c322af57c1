"""Tests of the structure stage."""
