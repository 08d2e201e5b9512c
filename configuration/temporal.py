"""Connecting to the configured Temporal: one client recipe (namespace, API key, TLS, the pydantic data
converter every workflow and activity payload needs) for the worker, the web app and the command line.

It only connects: what runs on the client (workers, workflows) is the caller's.
"""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from configuration.settings import ServiceUnreachable, Settings, SettingsError

_runtimes: dict[str, Runtime] = {}


def metrics_runtime(settings: Settings) -> Runtime | None:
    """The SDK runtime exporting Temporal's worker and client metrics in Prometheus format on
    ``GRANTFLOW_TEMPORAL_METRICS_ADDRESS`` (None when unset: the SDK's default runtime). One per address
    and process: the exporter binds the address when the runtime is created."""
    address = settings.temporal_metrics_address
    if not address:
        return None
    runtime = _runtimes.get(address)
    if runtime is None:
        try:
            runtime = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))
        except Exception as exc:  # the SDK raises a RuntimeError or ValueError naming the bind failure
            raise SettingsError(f"GRANTFLOW_TEMPORAL_METRICS_ADDRESS={address}: {exc}") from None
        _runtimes[address] = runtime
    return runtime


async def connect_client(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    """A client of the configured Temporal; :class:`ServiceUnreachable` naming the setting when the
    frontend cannot be reached (the SDK's own error is a RuntimeError with a gRPC dump). ``runtime``:
    the SDK runtime its workers run on (:func:`metrics_runtime`), else the SDK's default."""
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    try:
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=pydantic_data_converter,
            api_key=api_key,
            tls=bool(api_key) or settings.temporal_tls,
            runtime=runtime,
        )
    except RuntimeError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ServiceUnreachable(
            f"GRANTFLOW_TEMPORAL_ADDRESS={settings.temporal_address}: Temporal cannot be reached ({reason})"
        ) from None
