"""Reading a webhook's raw body with a bound, before anything else looks at it.

Slack and Jira sign the raw bytes, so the body must be read whole before the signature can be checked
— but never more of it than a real delivery can be: a sender (anyone on the internet, before the
signature says otherwise) streaming megabytes gets 413 after ``limit`` bytes, with nothing parsed.
"""

from __future__ import annotations

from starlette.requests import Request

SLACK_BODY_LIMIT = 256 * 1024
"""Slack's interaction payloads carry the message they came from (50 blocks at most) and stay far below."""

JIRA_BODY_LIMIT = 4 * 1024 * 1024
"""A Jira issue event carries the issue with its fields, changelog and comment: generous, still bounded."""


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit} bytes")
        self.limit = limit


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, or ``BodyTooLarge`` as soon as it (or its declared length) passes ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)
