"""Users and groups in the hoop stand-in: people seeded in process, signing in, personal tokens, and the
admin-only user API.

- ``GET /users``, ``GET``/``PUT /users/{emailOrID}`` (**PUT replaces the whole user**: name, slack_id and
  groups not sent are cleared; the email is never changed; ``status`` is stored as sent, so an omitted or
  unknown one is a 500 that writes nothing; the role follows the groups), ``GET /users/groups``.
- A user who is not ``active`` is refused at connect ("user is not active"); an ``inactive`` one cannot
  sign in either. Signing in (``sign_in``) sets an ``invited`` user active and, with an IdP groups claim,
  overwrites the groups (an admin keeps admin).
- Stand-in only: ``POST /api/_sandbox/login {"user_email","idp_groups"?}`` → 200 the user, or 403 for an
  inactive one, as an OIDC login whose groups claim is ``idp_groups`` (omitted: groups kept).

A person known only to the IdP (``add_user(signed_in=False)``) has no hoop user until ``sign_in``. This
module never decides what a user may reach (``connections``) or opens sessions.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sandbox.hoop.api import Caller, HoopAccessDenied, HTTPError, person_request, refusal_as_403
from sandbox.hoop.state import HoopCore


class Users(HoopCore):
    """Seeding, signing in and serving users and their groups."""

    def add_user(
        self,
        email: str,
        name: str = "",
        groups: Iterable[str] = (),
        status: str = "active",
        signed_in: bool = True,
        slack_id: str = "",
    ) -> str:
        """Add (or update, keeping its subject) a user; returns the subject id. ``signed_in=False`` keeps the
        person out of hoop (known only to the IdP) until ``sign_in``: hoop has no such user before a login."""
        if status not in ("active", "inactive", "invited"):
            raise ValueError(f"bad status {status!r}")
        with self._lock:
            user = self._find_user(email)
            record = {
                "email": email,
                "name": name,
                "status": status,
                "slack_id": slack_id,
                "groups": sorted(set(groups)),
            }
            if user is not None:
                user.update(record)
                self._save()
                return str(user["id"])
            identity = self._state["identities"].get(email)
            subject = identity["id"] if identity else str(uuid.uuid4())
            record["id"] = subject
            if signed_in:
                self._state["identities"].pop(email, None)
                self._state["users"][subject] = record
                self._indexed(record)
            else:
                self._state["identities"][email] = record
            self._save()
            return subject

    def sign_in(self, email: str, *, idp_groups: Iterable[str] | None = None) -> str:
        """The person logs in to hoop (OIDC). With ``idp_groups`` the IdP claim overwrites their groups, as
        hoop does at every login when a groups claim is configured. Returns the subject id; raises
        ``HoopAccessDenied`` for an inactive user, whose record is left as it was."""
        with self._lock:
            user = self._find_user(email)
            # gateway/api/login/oidc/login.go LoginCallback: an existing inactive user is refused (the login
            # ends in an error redirect) before anything is synced; an admin must set them active first.
            if user is not None and user["status"] == "inactive":
                raise HoopAccessDenied(f"user is inactive: {email} cannot sign in to hoop")
            if user is None:
                identity = self._state["identities"].pop(email, None)
                if identity is None:
                    identity = {
                        "id": str(uuid.uuid4()),
                        "email": email,
                        "name": "",
                        "status": "active",
                        "slack_id": "",
                        "groups": [],
                    }
                user = identity
                self._state["users"][user["id"]] = user
                self._indexed(user)
            elif idp_groups is not None and "admin" in user["groups"]:
                # login.go syncSingleTenantUser: an existing admin keeps the admin group over the claim.
                idp_groups = [*idp_groups, "admin"]
            # login.go syncSingleTenantUser: the user is written back as "active" (an invited user becomes
            # active) and, with a groups claim (MustSyncGroups), their groups become the claim, deduplicated.
            user["status"] = "active"
            if idp_groups is not None:
                user["groups"] = sorted(set(idp_groups))
            self._save()
            return str(user["id"])

    def issue_user_token(self, email: str) -> str:
        """A bearer token that authenticates as this (signed-in) person, like a hoop web session."""
        with self._lock:
            user = self._require_user(email)
            token = "usr_" + uuid.uuid4().hex
            self._state["tokens"][token] = user["id"]
            self._save()
            return token

    def user(self, email_or_id: str) -> dict[str, Any]:
        with self._lock:
            user = self._find_user(email_or_id)
            if user is None:
                raise KeyError(email_or_id)
            return self._render_user(user)

    def _h_list_users(self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any) -> Any:
        users = sorted(self._state["users"].values(), key=lambda u: u["email"])
        return 200, [self._render_user(u) for u in users]

    def _h_list_groups(self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any) -> Any:
        return 200, sorted({g for u in self._state["users"].values() for g in u["groups"]})

    def _h_get_user(self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any) -> Any:
        user = self._find_user(params["email_or_id"])
        if user is None:  # gateway/api/user/user.go GetUserByEmailOrID
            raise HTTPError(404, f"user {params['email_or_id']} not found")
        return 200, self._render_user(user)

    def _h_put_user(self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any) -> Any:
        # gateway/api/user/user.go Update: the user is looked up by email (a valid address) or subject.
        user = self._find_user(params["email_or_id"])
        if user is None:
            raise HTTPError(404, f"user {params['email_or_id']} not found")
        # user.go Update binds openapi.User: a missing email (binding:"required") or a wrongly typed field
        # is a 400 from gin's ShouldBindJSON.
        if not isinstance(body, dict):
            raise HTTPError(400, "invalid request body")
        self._bind_user_field(body, "email", required=True)
        for key in ("name", "status", "slack_id"):
            self._bind_user_field(body, key)
        groups = body.get("groups") or []
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise HTTPError(400, "json: cannot unmarshal groups into Go struct field User.groups")
        # user.go Update: status is stored as sent; the `default:"active"` tag is documentation only, so an
        # omitted or unknown status reaches Postgres' enum_user_status and fails (migrations/000001_init,
        # 000023 add 'invited') with a 500 after nothing was written.
        status = body.get("status") or ""
        if status not in ("active", "reviewing", "inactive", "invited"):
            raise HTTPError(500, "failed updating user and user groups")
        groups = list(groups)
        if caller.kind == "user" and caller.id == user["id"]:
            # user.go Update: nobody removes admin from themselves or deactivates themselves.
            if "admin" not in groups:
                groups.append("admin")
            if status != "active":
                raise HTTPError(422, "cannot deactivate yourself")
        # user.go Update: a full replace of name, status, slack_id and the group list (groups are deleted
        # and inserted again: models/users.go UpdateUserAndUserGroups); whatever the body leaves out is
        # cleared. The email is never changed by PUT (existingUser.Email is kept); the role is derived
        # from the groups (toRole: admin when "admin" is among them).
        user.update(
            name=body.get("name") or "",
            slack_id=body.get("slack_id") or "",
            status=status,
            groups=sorted(set(groups)),
        )
        self._save()
        return 200, self._render_user(user)

    @staticmethod
    def _bind_user_field(body: dict[str, Any], key: str, *, required: bool = False) -> None:
        value = body.get(key)
        if value is None and not required:
            return
        if required and value in (None, ""):
            field = key.capitalize()
            raise HTTPError(
                400, f"Key: 'User.{field}' Error:Field validation for '{field}' failed on the 'required' tag"
            )
        if not isinstance(value, str):
            raise HTTPError(400, f"json: cannot unmarshal {key} into Go struct field User.{key}")

    def _h_sandbox_login(
        self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any
    ) -> Any:
        """Stand-in only: the person signs in to hoop with the IdP's ``idp_groups`` claim (``sign_in``)."""
        body, email = person_request(body)
        idp_groups = body.get("idp_groups")
        if idp_groups is not None and (
            not isinstance(idp_groups, list) or not all(isinstance(g, str) for g in idp_groups)
        ):
            raise HTTPError(422, "idp_groups must be a list of group names")
        with refusal_as_403():
            self.sign_in(email, idp_groups=idp_groups)
        return 200, self._render_user(self._require_user(email))

    @staticmethod
    def _render_user(user: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": user["id"],
            "email": user["email"],
            "name": user["name"],
            "status": user["status"],
            "role": "admin" if "admin" in user["groups"] else "standard",
            "slack_id": user["slack_id"],
            "groups": list(user["groups"]),
        }
