"""Tests of the shared network toolbox."""
