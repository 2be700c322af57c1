"""Tests of super-resolution and Hα."""
