"""Tests of the gradient-inversion audit (aggregator/audit)."""
