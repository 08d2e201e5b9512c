"""Rigs for the tests of grantflow's channels: the stand-ins wired to the web app and to grantflow's worker.

- ``tests/rigs/edges.py``: the web app with its Slack and Jira edges in front of the stand-ins, and what
  people do in Slack and Jira;
- ``tests/rigs/faults.py``: the stand-ins failing the calls a seeded plan picks.

``tests/channel_stack.py`` builds the full rig (every channel) on these; the builders of views, payloads
and signatures the tests share are in ``tests/builders.py``.
"""
