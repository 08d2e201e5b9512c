"""Connecting to the configured Temporal: one client recipe (namespace, API key, TLS, the pydantic data
converter every workflow and activity payload needs) for the worker, the web app and the command line.

It only connects: what runs on the client (workers, workflows) is the caller's.
"""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from configuration.settings import ServiceUnreachable, Settings


async def connect_client(settings: Settings) -> Client:
    """A client of the configured Temporal; :class:`ServiceUnreachable` naming the setting when the
    frontend cannot be reached (the SDK's own error is a RuntimeError with a gRPC dump)."""
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    try:
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=pydantic_data_converter,
            api_key=api_key,
            tls=bool(api_key) or settings.temporal_tls,
        )
    except RuntimeError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ServiceUnreachable(
            f"GRANTFLOW_TEMPORAL_ADDRESS={settings.temporal_address}: Temporal cannot be reached ({reason})"
        ) from None
