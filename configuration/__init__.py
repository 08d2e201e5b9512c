"""grantflow's configuration: what every layer may read without importing the command line.

``configuration.settings`` holds the settings (environment variables, a TOML file, defaults) and their
checks; ``configuration.temporal`` connects to Temporal and ``configuration.policies`` loads the policies
the settings name. It imports nothing of grantflow's but ``domain``; the command line, the worker and the
web app load the settings and hand each layer the parts it needs.
"""

__version__ = "0.1.0"
