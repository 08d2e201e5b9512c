"""The access policies a deployment configured (``GRANTFLOW_POLICIES_FILE``), for the worker and the web
app, which must agree on them.

Never falls back to the example policies: ``grantflow dev`` configures those explicitly.
"""

from __future__ import annotations

from configuration.settings import Settings, SettingsError
from domain.policy import PolicyError, PolicySet, load_policies


def configured_policies(settings: Settings) -> PolicySet:
    """The configured policies; :class:`SettingsError` naming the setting when unset or unusable."""
    if settings.policies_file is None:
        raise SettingsError("GRANTFLOW_POLICIES_FILE is not set: the access policies file is required")
    try:
        return load_policies(settings.policies_file)
    except PolicyError as exc:
        raise SettingsError(f"GRANTFLOW_POLICIES_FILE: {exc}") from None
