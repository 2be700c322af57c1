"""Tests of the classify stage."""
