"""Signed, expiring review links bound to one approver and one request.

A link carries ``(request_id, approver_id)`` signed with ``review_link_secret``; it expires after
``review_link_ttl``. Whoever holds the link acts as that approver and no one else, so the link is the
approver's identity on the web page — and the workflow still checks that the approver is eligible.
"""

from __future__ import annotations

from datetime import timedelta

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer


class ReviewLinkError(ValueError):
    """A review link that is forged, garbled or expired; the message says which. ``issued_for`` is the
    (request or campaign id, approver or reviewer id) of an authentic link that has expired — whoever uses
    one is attempting a decision as that person, which is evidence — and None for anything forged."""

    def __init__(self, message: str, issued_for: tuple[str, str] | None = None) -> None:
        super().__init__(message)
        self.issued_for = issued_for


class ReviewLinks:
    SALT = "grantflow.review-link.v1"

    def __init__(self, secret: str, base_url: str, ttl: timedelta) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt=self.SALT)
        self._base_url = base_url.rstrip("/")
        self._ttl = ttl

    def token(self, request_id: str, approver_id: str) -> str:
        return str(self._serializer.dumps({"r": request_id, "a": approver_id}))

    def url(self, request_id: str, approver_id: str) -> str:
        return f"{self._base_url}/review/{self.token(request_id, approver_id)}"

    def read(self, token: str) -> tuple[str, str]:
        """The (request_id, approver_id) a token was issued for; raises :class:`ReviewLinkError`."""
        try:
            data = self._serializer.loads(token, max_age=int(self._ttl.total_seconds()))
        except SignatureExpired as exc:
            raise ReviewLinkError(
                "this review link has expired; ask for a new one", self._expired_ids(exc, "r")
            ) from None
        except BadSignature:
            raise ReviewLinkError("this review link is not valid") from None
        if not isinstance(data, dict) or not {"r", "a"} <= data.keys():
            raise ReviewLinkError("this review link is not valid")
        return str(data["r"]), str(data["a"])

    # A campaign link carries ``c`` instead of ``r``: a request's link never opens a campaign page and a
    # campaign's never a request's, though both are signed with the same secret.

    def campaign_token(self, campaign_id: str, reviewer_id: str) -> str:
        return str(self._serializer.dumps({"c": campaign_id, "a": reviewer_id}))

    def campaign_url(self, campaign_id: str, reviewer_id: str) -> str:
        return f"{self._base_url}/campaigns/review/{self.campaign_token(campaign_id, reviewer_id)}"

    def read_campaign(self, token: str, *, ttl: timedelta | None = None) -> tuple[str, str]:
        """The (campaign_id, reviewer_id) a campaign token was issued for; ``ttl`` (the campaign's own
        length, when longer than the request links') bounds its age. Raises :class:`ReviewLinkError`."""
        max_age = ttl if ttl is not None and ttl > self._ttl else self._ttl
        try:
            data = self._serializer.loads(token, max_age=int(max_age.total_seconds()))
        except SignatureExpired as exc:
            raise ReviewLinkError(
                "this review link has expired; ask the campaign owner for a new one",
                self._expired_ids(exc, "c"),
            ) from None
        except BadSignature:
            raise ReviewLinkError("this review link is not valid") from None
        if not isinstance(data, dict) or not {"c", "a"} <= data.keys():
            raise ReviewLinkError("this review link is not valid")
        return str(data["c"]), str(data["a"])

    def _expired_ids(self, expired: SignatureExpired, key: str) -> tuple[str, str] | None:
        """What an expired link was issued for: its signature was checked before its age, so the ids are
        authentic (``key``: ``r`` for a request's link, ``c`` for a campaign's)."""
        try:
            data = self._serializer.load_payload(expired.payload) if expired.payload is not None else None
        except BadSignature:
            return None
        if not isinstance(data, dict) or not {key, "a"} <= data.keys():
            return None
        return str(data[key]), str(data["a"])
