"""Reading a whole SCIM listing page by page, and refusing one whose pages do not add up.

SCIM pages by *position* (``startIndex``/``count``, 1-based, with ``totalResults`` on every page), so a
write on the provider during a listing shifts the pages: a deletion makes the next page skip one resource,
a creation makes it repeat one. :func:`read_all_pages` therefore checks every page and raises
``ScimInconsistentPage`` instead of returning anything when

- ``totalResults`` differs from the first page's (a resource was created or deleted meanwhile);
- a page before the end is shorter than the first page (resources missing). The first page sets the page
  size rather than ``count`` because providers may serve fewer than asked without saying so; a first page
  cut short loses nothing, since the next page starts where it ended (and if its positions were skipped,
  the next page repeats an id);
- an id appears twice (the pages shifted, or the provider ignores ``startIndex``), or a resource has no id;
- the pages end (an empty page, or the last position reached) with fewer or more resources than
  ``totalResults``.

The listing stops at an empty page or once ``start + len(page) > totalResults``. A sync must never be
applied from a partial listing: a missing user would look deleted and lose every grant.
``ScimInconsistentPage`` is transient — retrying the whole listing (the activity's retry policy) normally
succeeds once the writes settle. This module never retries and never sends a request itself: the caller
hands it the function that fetches one page.

Incremental listings (``modified_since``) use the filter ``meta.lastModified gt "…"`` (the instant is
truncated to milliseconds, so the result can only be a superset). **They cannot see deletions**: a deleted
resource has no ``lastModified`` left to match, it is simply absent, and absence from a *filtered* listing
means "unchanged". Leavers removed by deletion (rather than deactivated) are only seen by a periodic *full*
listing, which the sync must therefore still run. Callers keep as watermark the largest ``last_modified``
they have seen (the provider's clock, not grantflow's) and may overlap it a little: applying a user twice is
harmless.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from integrations.scim.errors import ScimInconsistentPage, ScimPermanentError
from integrations.scim.records import resource_id

T = TypeVar("T")


def modified_since_filter(when: datetime) -> str:
    """The filter of an incremental listing: UTC, milliseconds (truncated, so ``gt`` can only match more)."""
    if when.tzinfo is None:
        raise ValueError("modified_since must be timezone-aware")
    utc = when.astimezone(UTC)
    return f'meta.lastModified gt "{utc.strftime("%Y-%m-%dT%H:%M:%S.")}{utc.microsecond // 1000:03d}Z"'


def _read_page(raw: Any, where: str) -> tuple[int, list[Any]]:
    if not isinstance(raw, dict):
        raise ScimPermanentError(f"{where}: the directory did not answer a SCIM list")
    total = raw.get("totalResults")
    if not isinstance(total, int) or isinstance(total, bool) or total < 0:
        raise ScimPermanentError(
            f"{where}: the answer has no valid totalResults, so a complete listing cannot be verified"
        )
    resources = raw.get("Resources", raw.get("resources")) or []
    if not isinstance(resources, list):
        raise ScimPermanentError(f"{where}: Resources is not a list")
    return total, resources


async def read_all_pages(
    fetch_page: Callable[[int, str], Awaitable[Any]],
    noun: str,
    convert: Callable[[dict[str, Any]], T],
    on_page: Callable[[int, int], None] | None,
) -> list[T]:
    """Every resource of a listing, converted, after checking that the pages add up (module docstring).

    ``fetch_page(start_index, where)`` returns one page as JSON; ``where`` names it in error messages.
    ``on_page(fetched_so_far, total_results)`` is called after each page (progress, heartbeats)."""
    items: list[T] = []
    seen: set[str] = set()
    start = 1
    total: int | None = None
    full_page: int | None = None  # the length every page but the last must have
    while True:
        where = f"listing {noun} at startIndex {start}"
        page_total, resources = _read_page(await fetch_page(start, where), where)
        if total is None:
            total = page_total
        elif page_total != total:
            raise ScimInconsistentPage(
                f"{where}: totalResults changed from {total} to {page_total} during the listing "
                "(the directory changed meanwhile)"
            )
        if not resources:
            break
        end = start + len(resources) - 1
        if end > total:
            raise ScimInconsistentPage(f"{where}: {len(resources)} resources run past totalResults {total}")
        if end < total:  # a page before the end: it must be full
            if full_page is None:
                # the first page sets the size: a provider may serve fewer than asked without saying so
                full_page = len(resources)
            if len(resources) != full_page:
                raise ScimInconsistentPage(
                    f"{where}: a page before the end holds {len(resources)} resources where the first "
                    f"held {full_page} (resources missing, or the pages shifted)"
                )
        for raw_resource in resources:
            rid = resource_id(raw_resource, where)
            if rid in seen:
                raise ScimInconsistentPage(
                    f"{where}: {noun[:-1]} {rid} appears twice (the pages shifted while listing)"
                )
            seen.add(rid)
            items.append(convert(raw_resource))
        if on_page is not None:
            on_page(len(items), total)
        if end == total:
            break
        start = end + 1
    if total is None or len(items) != total:
        raise ScimInconsistentPage(
            f"listing {noun} ended with {len(items)} of totalResults {total} (a page came back empty early)"
        )
    return items
