"""Observability: metrics (and, later, logs and traces)."""
