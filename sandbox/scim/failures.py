"""What tests make the SCIM directory get wrong: failed requests and misbehaving listing pages.

Failed requests go through the shared ``sandbox.faults.FaultPlan``, matched on whole path segments below
the SCIM root (``/Users`` fails ``/Users`` and ``/Users/abc``, never ``/UsersX``). Page faults are SCIM's
own: they count ``GET /Users`` / ``GET /Groups`` listing pages from the call that adds them, and fail,
rewrite, shorten or precede the k-th one. This module decides what goes wrong; it never serves a request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scim2_server.applications.base import BaseApplication

from sandbox.faults import Fault, FaultPlan
from sandbox.scim.wsgi import Answer, error_answer


def normalise(prefix: str) -> str:
    """A path prefix as the directory compares it: relative to the SCIM root, lower case, no trailing /."""
    prefix = "/" + prefix.strip().lstrip("/")
    return BaseApplication.split_path(prefix).rstrip("/").lower()


def header(value: float | str | None) -> str | None:
    """``Retry-After`` as sent: whole seconds without a fraction, anything else as given."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def request_fault(
    path_prefix: str, status: int, count: int, retry_after: float | str | None, scim_body: bool
) -> Fault:
    # Both the prefix and the path (see ``take_failure``) end in "/", so a prefix matches whole segments.
    return Fault(
        normalise(path_prefix) + "/", status, count, retry_after=header(retry_after), html=not scim_body
    )


def take_fault(plan: FaultPlan, path: str, *, method: str, call: str) -> Fault | None:
    """The fault due for a request to ``path`` (normalised), if any; ``call`` names it for the plan."""
    return plan.take(path + "/", method, call=call)


def fault_answer(fault: Fault) -> Answer:
    """The directory's answer for an injected failure (RFC 7644 §3.12 error, or a proxy's HTML page)."""
    return error_answer(
        fault.status,
        retry_after=fault.retry_after_header(),
        scim_body=not fault.html,
        detail="injected failure",
    )


@dataclass
class PageFault:
    """Applies to the ``countdown``-th listing page (1 = the next) of the listings under ``prefix``."""

    prefix: str
    countdown: int
    fail_status: int | None = None
    retry_after: str | None = None
    tamper: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    before: Callable[[], object] | None = None


class PageFaults:
    """The page faults still to come, thread-safe (tests add them while the server serves)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[PageFault] = []

    def add(self, fault: PageFault) -> None:
        if fault.countdown < 1:
            raise ValueError("pages are counted from 1 (the next page)")
        with self._lock:
            self._faults.append(fault)

    def due(self, path: str) -> list[PageFault]:
        """Count a listing page of ``path`` served, and take the faults that apply to it."""
        due: list[PageFault] = []
        with self._lock:
            for fault in list(self._faults):
                if fault.prefix != path:
                    continue
                fault.countdown -= 1
                if fault.countdown == 0:
                    due.append(fault)
                    self._faults.remove(fault)
        return due

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
