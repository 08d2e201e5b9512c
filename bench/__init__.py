"""grantflow's benchmarks: each scenario against a bare Temporal baseline of the same shape, in the same run.

``python -m bench <scenario> [--size N]`` starts its own Temporal dev server (a SQLite file, as in
production on one machine) and stand-ins, runs grantflow and the baseline one after the other in separate
processes (so each one's peak memory is its own), writes a JSON result under ``bench/results/`` and appends a
line with the exact command to ``bench/results.md``. Absolute times on a shared machine are noisy; the ratio
to the baseline measured minutes apart on the same machine is the figure to read.
"""
