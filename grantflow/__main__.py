"""``python -m grantflow`` is the ``grantflow`` command."""

from grantflow.cli import run

run()
