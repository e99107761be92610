"""Profilers: measure blocks or whole models on a target device (backends) into latency tables."""
