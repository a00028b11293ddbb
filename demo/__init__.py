"""Bundled demo and scenario workloads (needs the ``demo`` extra: torch)."""
