"""Latency lookup tables (``table``), importers of published tables, and the latency model."""
