"""Benchmarks: regflow measured against peer tools on real local infrastructure."""
