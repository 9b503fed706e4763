"""Simulated callers and judges for `vlrun test` (docs/evals.md)."""
