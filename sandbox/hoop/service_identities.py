"""hoop's service accounts (``/serviceaccounts``) and machine identities (``/machineidentities``) in the
stand-in, as ``gateway/api/serviceaccount/serviceaccount.go``, ``gateway/models/serviceaccount.go``,
``gateway/api/machineidentity/machineidentity.go``, ``gateway/services/machineidentity.go`` and
``gateway/models/machineidentity.go`` have them (hoophq/hoop at e939597). Who may call what is
``gateway/api/server.go``: the listings and ``GET /machineidentities/{name}`` are ``ReadOnlyAccessRole``
(any signed-in caller: standard, auditor or admin), every write is ``AdminOnlyAccessRole``.

**Service accounts** are identities of an IdP client, keyed by the token's ``subject``; they sign in like
people (``models/user_context.go`` ``GetUserContext`` unions users and service accounts), so their groups
reach connections exactly as a person's do, and an ``inactive`` one cannot use the API.

- ``GET /serviceaccounts`` lists them with their groups — JSON ``null`` when there is none (the handler
  appends to a nil slice). There is no ``GET /serviceaccounts/{subject}``: a read is the listing.
- ``POST`` needs ``subject`` and ``status`` (``active`` | ``inactive``); the id is derived from the subject
  (``genDeterministicUUID``), so a taken subject → 409.
- ``PUT /serviceaccounts/{subject}`` replaces the status and **all the groups** (groups left out are
  removed); an empty name keeps the stored one; the subject never changes. The answer echoes the request's
  fields, not the stored row.

**Machine identities** are bound to connections, each with a credential of its own. A connection reaches
one by its ``connection_names`` or by sharing one of its ``attributes`` (ABAC).

- ``GET /machineidentities`` (``[]`` when there is none, newest first), ``GET /{name}`` (404).
- ``POST`` provisions a credential per bound connection, checked first (exists, supported type);
  ``PUT /{name}`` replaces name, description, ``connection_names`` and ``attributes`` (all of them: what is
  left out is cleared). A connection no longer named loses its credential — unless one of the identity's
  attributes still links it. An unknown name answers **400**, not the spec's 404.
- ``DELETE /{name}`` → 200 ``{"message": "machine identity deleted"}``; ``GET /{name}/credentials`` and
  ``POST /{name}/credentials/{connectionName}/rotate`` (admin only).
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from sandbox.hoop.api import Caller, HTTPError
from sandbox.hoop.clock import ts
from sandbox.hoop.identity_keys import ORG_ID
from sandbox.hoop.state import HoopCore

SA_STATUSES = ("active", "inactive")  # openapi/types.go ServiceAccountStatusType
# services/machineidentity.go validMachineIdentityConnectionTypes, after services/credentials.go
# MapValidSubtypeToHttpProxy maps a connection's subtype
MI_CONNECTION_TYPES = ("postgres", "ssh", "rdp", "aws-ssm", "httpproxy", "kubernetes", "claude-code")
_SUBTYPE_MAP = {
    "grafana": "httpproxy",
    "kibana": "httpproxy",
    "kubernetes-token": "httpproxy",
    "git": "ssh",
    "github": "ssh",
    "kubernetes": "kubernetes",
    "kubernetes-eks": "kubernetes",
}
_ZERO_TIME = "0001-01-01T00:00:00Z"  # a Go zero time.Time, as PUT's answer carries it


def service_account_id(subject: str) -> str:
    """serviceaccount.go genDeterministicUUID: SHA-1 UUID of ``serviceaccount/<subject>`` in the URL
    namespace."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"serviceaccount/{subject}"))


def machine_identity_id(name: str) -> str:
    """models/machineidentity.go GenerateMachineIdentityID (set once, at creation: a rename keeps it)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ORG_ID}:machineidentity:{name}"))


def _bind_error(struct: str, field: str) -> HTTPError:
    # gin's ShouldBindJSON on a `binding:"required"` field answers 400 with the validator's sentence
    return HTTPError(
        400, f"Key: '{struct}.{field}' Error:Field validation for '{field}' failed on the 'required' tag"
    )


def _string_list(body: dict[str, Any], key: str) -> list[str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise HTTPError(400, f"json: cannot unmarshal {key} into a list of strings")
    return list(value)


def _string(body: dict[str, Any], key: str) -> str:
    value = body.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise HTTPError(400, f"json: cannot unmarshal {key} into a string")
    return value


class ServiceIdentities(HoopCore):
    """Service accounts (``state["service_accounts"][id]``) and machine identities
    (``state["machine_identities"][id]``, each with its credentials by connection)."""

    # ------------------------------------------------------------------ in process (seeding, assertions)

    def add_service_account(
        self, subject: str, name: str = "", groups: list[str] | tuple[str, ...] = (), status: str = "active"
    ) -> str:
        """Create a service account in process; returns its id."""
        with self._lock:
            record = self._create_service_account(subject, name, list(groups), status)
            self._save()
            return str(record["id"])

    def service_account(self, subject: str) -> dict[str, Any]:
        with self._lock:
            record = self._accounts().get(service_account_id(subject))
            if record is None:
                raise KeyError(subject)
            return self._render_account(record)

    def add_machine_identity(
        self,
        name: str,
        connections: list[str] | tuple[str, ...] = (),
        *,
        description: str = "",
        attributes: list[str] | tuple[str, ...] = (),
    ) -> str:
        """Create a machine identity bound to ``connections`` in process; returns its id."""
        with self._lock:
            record, _ = self._create_machine_identity(name, description, list(connections), list(attributes))
            self._save()
            return str(record["id"])

    def machine_identity(self, name: str) -> dict[str, Any]:
        """The identity as ``GET /machineidentities/{name}`` shows it, plus ``credentials`` (the connections
        it holds a credential for)."""
        with self._lock:
            record = self._identity(name)
            if record is None:
                raise KeyError(name)
            return self._render_identity(record) | {"credentials": sorted(record["credentials"])}

    # ------------------------------------------------------------------ state

    def _accounts(self) -> dict[str, dict[str, Any]]:
        table: dict[str, dict[str, Any]] = self._state.setdefault("service_accounts", {})
        return table

    def _identities(self) -> dict[str, dict[str, Any]]:
        table: dict[str, dict[str, Any]] = self._state.setdefault("machine_identities", {})
        return table

    def _identity(self, name: str) -> dict[str, Any] | None:
        # models/machineidentity.go GetMachineIdentityByName: by name only
        return next((r for r in self._identities().values() if r["name"] == name), None)

    def _create_service_account(
        self, subject: str, name: str, groups: list[str], status: str
    ) -> dict[str, Any]:
        if status not in SA_STATUSES:
            raise HTTPError(422, f'wrong status value "{status}"')  # serviceaccount.go: %q
        account_id = service_account_id(subject)
        if account_id in self._accounts():  # the subject is UNIQUE and the id derived from it
            raise HTTPError(409, "resource already exists")  # models/errors.go ErrAlreadyExists
        now = ts(self._clock())
        record = {
            "id": account_id,
            "subject": subject,
            "name": name,
            "status": status,
            # user_groups rows are inserted ON CONFLICT DO NOTHING: a group named twice is stored once
            "groups": list(dict.fromkeys(groups)),
            "created_at": now,
            "updated_at": now,
        }
        self._accounts()[account_id] = record
        return record

    def _attribute_connections(self, attributes: list[str]) -> list[str]:
        """models/attributes.go GetConnectionNamesMatchingAttributes: connections sharing an attribute."""
        table = self._state.get("attributes", {})
        found = {c for a in attributes if a in table for c in table[a]["connection_names"]}
        return sorted(found)

    def _check_connection(self, name: str) -> dict[str, Any] | None:
        """services/machineidentity.go: the connection when it exists and its (mapped) subtype takes
        credentials, else None (``_refusal`` says why; ABAC provisioning skips such connections). Its
        ``access_mode_connect`` must be enabled too, which every stand-in connection is."""
        conn = self._state["connections"].get(name)
        if conn is None:
            return None
        subtype = _SUBTYPE_MAP.get(conn["subtype"], conn["subtype"])
        return conn if subtype in MI_CONNECTION_TYPES else None

    def _refusal(self, name: str) -> str:
        conn = self._state["connections"].get(name)
        if conn is None:
            return f"connection {name} not found"
        subtype = _SUBTYPE_MAP.get(conn["subtype"], conn["subtype"])
        return f"connection {name} has unsupported type {subtype} for machine identities"

    def _credential(self, record: dict[str, Any], connection: str) -> dict[str, Any]:
        """services.ProvisionCredentialForConnection: a new secret key for the connection."""
        secret = "mik_" + secrets.token_hex(16)
        record["credentials"][connection] = secret
        return self._render_credential(connection, secret)

    def _render_credential(self, connection: str, secret: str) -> dict[str, Any]:
        # machineidentity.go credentialInfoToResponse (host, port and the per-protocol fields are omitempty)
        conn = self._state["connections"].get(connection) or {"type": "", "subtype": ""}
        body = {"connection_name": connection, "connection_type": conn["type"], "secret_key": secret}
        if conn["subtype"]:
            body["connection_subtype"] = _SUBTYPE_MAP.get(conn["subtype"], conn["subtype"])
        return body

    def _ensure_attributes(self, names: list[str]) -> None:
        # models/attributes.go UpsertMachineIdentityAttributes creates a missing attribute (ON CONFLICT DO
        # NOTHING) before linking it
        table: dict[str, dict[str, Any]] = self._state.setdefault("attributes", {})
        now = ts(self._clock())
        for name in names:
            table.setdefault(
                name,
                {
                    "id": str(uuid.uuid4()),
                    "name": name,
                    "description": "",
                    "connection_names": [],
                    "access_control_group_names": [],
                    "access_request_rule_names": [],
                    "created_at": now,
                    "updated_at": now,
                },
            )

    def _create_machine_identity(
        self, name: str, description: str, connections: list[str] | None, attributes: list[str]
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        if self._identity(name) is not None:
            raise HTTPError(409, "machine identity with this name already exists")
        for connection in connections or []:  # every connection is checked before anything is written
            if self._check_connection(connection) is None:
                raise HTTPError(400, f"failed creating machine identity: {self._refusal(connection)}")
        if connections is None:
            # connection_names is TEXT[] NOT NULL (migrations/000087) and gorm inserts a nil array as NULL
            raise HTTPError(
                400,
                "failed creating machine identity: failed creating machine identity: null value in column "
                '"connection_names" violates not-null constraint',
            )
        now = ts(self._clock())
        record: dict[str, Any] = {
            "id": machine_identity_id(name),
            "name": name,
            "description": description,
            "connection_names": list(connections),
            "attributes": list(dict.fromkeys(attributes)),
            "credentials": {},
            "created_at": now,
            "updated_at": now,
        }
        self._identities()[record["id"]] = record
        credentials = [self._credential(record, c) for c in dict.fromkeys(connections)]
        self._ensure_attributes(record["attributes"])
        for connection in self._attribute_connections(record["attributes"]):  # inline ABAC provisioning
            if connection not in record["credentials"] and self._check_connection(connection) is not None:
                credentials.append(self._credential(record, connection))
        return record, credentials

    @staticmethod
    def _render_account(record: dict[str, Any]) -> dict[str, Any]:
        # serviceaccount.go toOpenID: no timestamps
        return {
            "id": record["id"],
            "org_id": ORG_ID,
            "subject": record["subject"],
            "name": record["name"],
            "status": record["status"],
            "groups": list(record["groups"]),
        }

    @staticmethod
    def _render_identity(record: dict[str, Any]) -> dict[str, Any]:
        # machineidentity.go toOpenAPI: attributes are [] rather than null
        return {
            "id": record["id"],
            "name": record["name"],
            "description": record["description"],
            "connection_names": list(record["connection_names"]),
            "attributes": list(record["attributes"]),
            "created_at": record["created_at"],
            "updated_at": record["updated_at"],
        }

    # ------------------------------------------------------------------ the API

    def service_identity_routes(self) -> list[tuple[str, Any, str, bool]]:
        """(path, handler, method, admin only) of both resources (server.go's role per route)."""
        return [
            ("/api/serviceaccounts", self._h_list_accounts, "GET", False),
            ("/api/serviceaccounts", self._h_create_account, "POST", True),
            ("/api/serviceaccounts/{subject}", self._h_update_account, "PUT", True),
            ("/api/machineidentities", self._h_list_identities, "GET", False),
            ("/api/machineidentities", self._h_create_identity, "POST", True),
            ("/api/machineidentities/{name}", self._h_get_identity, "GET", False),
            ("/api/machineidentities/{name}", self._h_update_identity, "PUT", True),
            ("/api/machineidentities/{name}", self._h_delete_identity, "DELETE", True),
            ("/api/machineidentities/{name}/credentials", self._h_list_credentials, "GET", True),
            (
                "/api/machineidentities/{name}/credentials/{connection}/rotate",
                self._h_rotate_credential,
                "POST",
                True,
            ),
        ]

    def _h_list_accounts(
        self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any
    ) -> Any:
        records = sorted(self._accounts().values(), key=lambda r: r["created_at"])
        return 200, [self._render_account(r) for r in records] or None  # serviceaccount.go List: nil slice

    def _h_create_account(
        self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any
    ) -> Any:
        if not isinstance(body, dict):
            raise HTTPError(400, "invalid request body")
        subject, status = _string(body, "subject"), _string(body, "status")
        if not subject:
            raise _bind_error("ServiceAccount", "Subject")
        if not status:
            raise _bind_error("ServiceAccount", "Status")
        groups = _string_list(body, "groups")
        record = self._create_service_account(subject, _string(body, "name"), groups or [], status)
        self._save()
        # serviceaccount.go Create answers the request's groups (null when none were sent)
        return 201, self._render_account(record) | {"groups": groups}

    def _h_update_account(
        self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any
    ) -> Any:
        if not isinstance(body, dict):
            raise HTTPError(400, "invalid request body")
        subject, status, name = _string(body, "subject"), _string(body, "status"), _string(body, "name")
        if not subject:  # required in the body although the path names the account
            raise _bind_error("ServiceAccount", "Subject")
        if not status:
            raise _bind_error("ServiceAccount", "Status")
        groups = _string_list(body, "groups")
        if status not in SA_STATUSES:
            raise HTTPError(422, f'wrong status value "{status}"')
        account_id = service_account_id(params["subject"])
        record = self._accounts().get(account_id)
        if record is None:  # models/serviceaccount.go UpdateServiceAccount: no row updated
            raise HTTPError(404, "resource not found")
        # gorm's Updates with a struct skips zero values: an empty name keeps the stored one
        if name:
            record["name"] = name
        record["status"] = status
        # UpdateServiceAccount deletes every user_groups row, then inserts the request's: omitted → none
        record["groups"] = list(dict.fromkeys(groups or []))
        record["updated_at"] = ts(self._clock())
        self._save()
        # the answer is built from the request (subject, name, groups as sent), the id from the path
        return 200, {
            "id": account_id,
            "org_id": ORG_ID,
            "subject": subject,
            "name": name,
            "status": status,
            "groups": groups,
        }

    def _h_list_identities(
        self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any
    ) -> Any:
        # models/machineidentity.go ListMachineIdentities: ORDER BY created_at DESC; make(…, 0) → []
        records = sorted(self._identities().values(), key=lambda r: r["created_at"], reverse=True)
        return 200, [self._render_identity(r) for r in records]

    def _h_get_identity(
        self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any
    ) -> Any:
        record = self._identity(params["name"])
        if record is None:
            raise HTTPError(404, "machine identity not found")
        return 200, self._render_identity(record)

    def _identity_body(self, body: Any) -> tuple[str, str, list[str] | None, list[str]]:
        if not isinstance(body, dict):
            raise HTTPError(400, "invalid request body")
        name = _string(body, "name")
        if not name:
            raise _bind_error("MachineIdentity", "Name")
        return (
            name,
            _string(body, "description"),
            _string_list(body, "connection_names"),
            _string_list(body, "attributes") or [],
        )

    def _h_create_identity(
        self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any
    ) -> Any:
        name, description, connections, attributes = self._identity_body(body)
        record, credentials = self._create_machine_identity(name, description, connections, attributes)
        self._save()
        # toCredentialResponses appends to a nil slice: null when no credential was made
        return 201, self._render_identity(record) | {"credentials": credentials or None}

    def _h_update_identity(
        self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any
    ) -> Any:
        name, description, connections, attributes = self._identity_body(body)
        record = self._identity(params["name"])
        if record is None:
            # services.UpdateMachineIdentity wraps ErrNotFound, so the handler's 404 case never matches
            raise HTTPError(
                400, "failed updating machine identity: failed fetching machine identity: resource not found"
            )
        if name != record["name"] and self._identity(name) is not None:
            raise HTTPError(409, "machine identity with this name already exists")
        old = list(record["connection_names"])
        new = list(connections or [])
        added = [c for c in dict.fromkeys(new) if c not in old]
        removed = [c for c in dict.fromkeys(old) if c not in new]
        new_credentials = []
        for connection in added:
            # checked one by one while provisioning: a bad one stops the update, and the credentials made
            # for the connections before it stay
            if self._check_connection(connection) is None:
                self._save()
                raise HTTPError(400, f"failed updating machine identity: {self._refusal(connection)}")
            new_credentials.append(self._credential(record, connection))
        still_linked = set(self._attribute_connections(attributes))
        for connection in removed:
            # an attribute the identity keeps still links the connection: its credential stays
            if connection not in still_linked:
                record["credentials"].pop(connection, None)
        if connections is None:
            # the UPDATE writes NULL into a NOT NULL column and fails — after the credentials were revoked
            self._save()
            raise HTTPError(
                400,
                "failed updating machine identity: failed updating machine identity: null value in column "
                '"connection_names" violates not-null constraint',
            )
        record.update(  # the id stays: GenerateMachineIdentityID runs at creation only
            name=name,
            description=description,
            connection_names=new,
            attributes=list(dict.fromkeys(attributes)),
            updated_at=ts(self._clock()),
        )
        self._ensure_attributes(record["attributes"])
        for connection in sorted(still_linked):  # inline ABAC provisioning
            if connection not in record["credentials"] and self._check_connection(connection) is not None:
                new_credentials.append(self._credential(record, connection))
        self._save()
        # the answer is built from a fresh struct: created_at and updated_at are Go zero times
        shown = self._render_identity(record) | {"created_at": _ZERO_TIME, "updated_at": _ZERO_TIME}
        return 200, shown | {"new_credentials": new_credentials or None}

    def _h_delete_identity(
        self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any
    ) -> Any:
        record = self._identity(params["name"])
        if record is None:
            raise HTTPError(404, "machine identity not found")
        record["credentials"].clear()  # DeleteAllMachineIdentityCredentials first, then the row
        del self._identities()[record["id"]]
        self._save()
        return 200, {"message": "machine identity deleted"}

    def _h_list_credentials(
        self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any
    ) -> Any:
        record = self._identity(params["name"])
        if record is None:
            raise HTTPError(404, "machine identity not found")
        return 200, [self._render_credential(c, s) for c, s in sorted(record["credentials"].items())]

    def _h_rotate_credential(
        self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any
    ) -> Any:
        # services.RotateMachineIdentityCredential wraps every error: the handler's 404 case never matches
        record = self._identity(params["name"])
        if record is None:
            raise HTTPError(
                400, "failed rotating credential: failed fetching machine identity: resource not found"
            )
        connection = params["connection"]
        if connection not in record["credentials"]:
            raise HTTPError(
                400,
                f"failed rotating credential: failed revoking old credential for connection {connection}: "
                "resource not found",
            )
        credential = self._credential(record, connection)
        self._save()
        return 201, credential
