"""Temporal workflows: one business process per workflow file (its parts — a strategy, a presenter, its
policies — in modules beside it), deterministic, no I/O, no vendor imports."""
