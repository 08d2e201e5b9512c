"""grantflow: the command line and the embedded development stack."""

from configuration import __version__

__all__ = ["__version__"]
