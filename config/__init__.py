"""grantflow's configuration: what every layer may read without importing the command line.

``config.settings`` holds the settings (environment variables, a TOML file, defaults) and their checks.
It imports nothing of grantflow's but ``domain``; the command line, the worker and the web app load the
settings and hand the parts each layer needs to it.
"""

__version__ = "0.1.0"
