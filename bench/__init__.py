"""Benchmarks: real processes on free ports, ratios against a baseline measured in the same run."""
