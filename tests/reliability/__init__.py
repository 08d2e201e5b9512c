"""The reliability suite: crashes, restarts, vendor faults, bad input and forged requests.

Every module here is in the long-running set (``pytest -m long``, run by ``.ci/run`` after the default
suite). Each scenario records what it injected and what it counted with
:func:`tests.reliability.results.record`; ``python -m tests.reliability.report`` turns those records into
``docs/reliability.md``.
"""
