"""Temporal workflows: one business process per file, deterministic, no I/O, no vendor imports."""
