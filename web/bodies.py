"""Reading a webhook's raw body with a bound, before anything else looks at it.

Slack and Jira sign the raw bytes, so the body must be read whole before the signature can be checked
— but never more of it than a real delivery can be: a sender (anyone on the internet, before the
signature says otherwise) streaming megabytes gets 413 after ``limit`` bytes, with nothing parsed.
"""

from __future__ import annotations

from starlette.requests import Request

SLACK_BODY_LIMIT = 1024 * 1024
"""1 MiB. The largest thing Slack sends grantflow is a ``block_actions`` payload carrying the message that
was clicked: one of grantflow's own, at most 50 blocks (Slack's limit for a message) whose texts are at most
3,000 characters each — about 150 KB of text — form-encoded (``payload=<JSON>``), which can roughly double
it. A deny modal's ``view_submission`` carries a modal of a few blocks; slash commands are a few hundred
bytes. More than three times the worst real case, and still small enough to read into memory."""

JIRA_BODY_LIMIT = 4 * 1024 * 1024
"""4 MiB. A ``jira:issue_updated`` event carries the whole issue (every field, custom ones included), the
changelog and the comment; Jira caps each text field at 32,767 characters by default
(``jira.text.field.character.limit``): a description, a comment and a dozen more text fields all filled to
that limit come to about 0.5 MB of JSON. Eight times that leaves room for sites with many custom fields,
and still bounds what an unsigned sender can make grantflow read."""


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
