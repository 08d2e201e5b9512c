"""``ScimDirectoryServer``: scim2-server's WSGI application served on 127.0.0.1, with the helpers an
administrator's changes and the tests need (see the package docstring).

It routes each request through the injected failures and page faults (``failures``), then scim2-server,
and persists after every successful write before answering (``persistence``). Resource rules (RFC 7643/7644)
are scim2-server's; this module never reimplements one.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote
from wsgiref.simple_server import make_server

from scim2_models import Email, EnterpriseUser, Filter, Group, GroupMember, Resource, ScimProvider, User
from scim2_server.applications.base import BaseApplication
from scim2_server.memory import InMemoryStorage
from scim2_server.testserver.application import BEARER_TOKEN_SCHEME, BearerTokenApplication
from scim2_server.utils import load_default_service_provider_config

from domain.identity import Organisation
from sandbox.faults import FaultPlan, RandomFaults, call_name
from sandbox.scim import persistence
from sandbox.scim.failures import (
    PageFault,
    PageFaults,
    fault_answer,
    header,
    normalise,
    request_fault,
    take_fault,
)
from sandbox.scim.models import GROUP_TYPE, USER_TYPE, UserModel, manager_of, set_manager
from sandbox.scim.wsgi import LOOPBACK, Answer, Handler, ThreadingServer, drop_connection, error_answer

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LISTING_PATHS = ("/users", "/groups")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # relative to the SCIM root, e.g. /Users/abc
    query: str
    status: int


class ScimDirectoryServer:
    """A SCIM 2.0 directory on 127.0.0.1 (scim2-server), optionally persisted to ``state_file``.

    Restartable: ``stop()`` then ``start()`` serves the same resources again (on a new port when 0)."""

    def __init__(
        self,
        *,
        state_file: Path | None = None,
        bearer_token: str,
        filter_supported: bool = True,
        max_results: int = 1000,
    ) -> None:
        if not bearer_token:
            raise ValueError("bearer_token must not be empty: scim2-server would then accept every request")
        self.state_file = Path(state_file) if state_file is not None else None
        self.bearer_token = bearer_token
        self.filter_supported = filter_supported

        config = load_default_service_provider_config()
        config.filter = Filter(supported=filter_supported, max_results=max_results)
        config.authentication_schemes = [BEARER_TOKEN_SCHEME]
        provider = ScimProvider(
            models=[User, EnterpriseUser, Group], resource_types=[USER_TYPE, GROUP_TYPE], config=config
        )
        self._storage = InMemoryStorage()
        self._app = BearerTokenApplication(self._storage, provider, bearer_tokens=[bearer_token])

        self._faults = FaultPlan()
        self._page_faults = PageFaults()
        self._persist_lock = threading.Lock()
        self.requests: deque[RecordedRequest] = deque(maxlen=10_000)

        self._server: ThreadingServer | None = None
        self._thread: threading.Thread | None = None
        self._base_url: str | None = None

        if self.state_file is not None and self.state_file.exists():
            persistence.load(self._storage, self.state_file)

    # -- lifecycle --

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the SCIM directory is not running")
        return self._base_url

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, port: int = 0) -> str:
        """Serve on 127.0.0.1:``port`` (a free port when 0); return the SCIM base URL."""
        if self._server is not None:
            raise RuntimeError("the SCIM directory is already running")
        server = make_server(LOOPBACK, port, self._wsgi, server_class=ThreadingServer, handler_class=Handler)
        self._server = server
        bound = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"scim-{bound}", daemon=True
        )
        self._thread.start()
        self._base_url = f"http://{LOOPBACK}:{bound}/v2"
        return self._base_url

    def stop(self, timeout: float = 10.0) -> None:
        server, thread = self._server, self._thread
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout)
        self._server = self._thread = self._base_url = None
        self._persist()

    def __enter__(self) -> ScimDirectoryServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- lookups --

    def users(self) -> list[UserModel]:
        """Copies of every user resource."""
        with self._storage.lock:
            return [u.model_copy(deep=True) for u in self._stored_users()]

    def groups(self) -> list[Group]:
        with self._storage.lock:
            return [g.model_copy(deep=True) for g in self._stored_groups()]

    @property
    def user_count(self) -> int:
        return len(self._stored("User"))

    @property
    def group_count(self) -> int:
        return len(self._stored("Group"))

    def user_id(self, email: str) -> str:
        """The SCIM id of the user whose userName or an email is ``email`` (case-insensitive)."""
        return str(self._user(email).id)

    def group_id(self, name: str) -> str:
        group = self._group(name)
        if group is None:
            raise KeyError(f"no group named {name!r} in the SCIM directory")
        return str(group.id)

    def id_map(self) -> dict[str, str]:
        """externalId → SCIM id for every user that has an externalId."""
        return {str(u.external_id): str(u.id) for u in self._stored_users() if u.external_id}

    # -- seeding --

    def seed_organisation(self, org: Organisation) -> dict[str, str]:
        """Create the organisation's people and groups (skipping those that exist); return externalId → id."""
        with self._storage.lock:
            ids = self.id_map()
            for person in org.people:
                if person.id not in ids:
                    ids[person.id] = self._create_user(
                        person.email, person.display_name, active=person.active, external_id=person.id
                    )
            for person in org.people:
                manager_scim_id = ids.get(person.manager_id) if person.manager_id else None
                user = cast(UserModel, self._storage.get(USER_TYPE, ids[person.id]))
                if manager_scim_id is not None and manager_of(user) is None:
                    set_manager(user, manager_scim_id)
                    self._storage.update(USER_TYPE, user)
            by_group: dict[str, list[str]] = {}
            for person in org.people:
                for name in person.groups:
                    by_group.setdefault(name, []).append(ids[person.id])
            for name, member_ids in by_group.items():
                if self._group(name) is None:
                    self._storage.create(
                        GROUP_TYPE,
                        Group(
                            display_name=name, members=[GroupMember(value=i, type="User") for i in member_ids]
                        ),
                    )
        self._persist()
        return ids

    def add_users(
        self,
        n: int,
        *,
        prefix: str = "user",
        domain: str = "example.com",
        first: int = 0,
        manager_email: str | None = None,
        active: bool = True,
        group: str | None = None,
        manager_id: str | None = None,
    ) -> list[str]:
        """Create ``n`` users ``{prefix}{i:05d}@{domain}`` (externalId ``{prefix}-{i:05d}``) in one go,
        without HTTP; optionally all reporting to ``manager_email`` (or the user ``manager_id``, which
        spares a search of every user: large generated organisations) and in ``group``. Returns their ids."""
        with self._storage.lock:
            if manager_email:
                manager_id = self.user_id(manager_email)
            created = []
            for i in range(first, first + n):
                email = f"{prefix}{i:05d}@{domain}"
                created.append(
                    self._create_user(
                        email,
                        f"{prefix.title()} {i:05d}",
                        active=active,
                        external_id=f"{prefix}-{i:05d}",
                        manager_id=manager_id,
                    )
                )
            if group is not None:
                self._add_members(group, created)
        self._persist()
        return created

    def create_user(
        self,
        email: str,
        display_name: str = "",
        *,
        manager_email: str | None = None,
        active: bool = True,
        external_id: str | None = None,
    ) -> str:
        """Create one user (a joiner); return the SCIM id."""
        with self._storage.lock:
            manager_id = self.user_id(manager_email) if manager_email else None
            user_id = self._create_user(
                email, display_name, active=active, external_id=external_id, manager_id=manager_id
            )
        self._persist()
        return user_id

    # -- changes an administrator makes in the identity provider --

    def deactivate(self, email: str) -> None:
        self.set_active(email, False)

    def set_active(self, email: str, active: bool) -> None:
        def change(user: UserModel) -> None:
            user.active = active

        self._modify_user(self.user_id(email), change)

    def delete_user(self, email: str) -> None:
        """Delete a user and, as identity providers do, take them out of every group."""
        with self._storage.lock:
            user_id = self.user_id(email)
            self._storage.delete(USER_TYPE, user_id)
            for group in self._stored_groups():
                if any(m.value == user_id for m in group.members or []):
                    self._remove_member(str(group.id), user_id)
        self._persist()

    def set_manager(self, email: str, manager_email: str | None) -> None:
        manager_id = self.user_id(manager_email) if manager_email else None

        def change(user: UserModel) -> None:
            set_manager(user, manager_id)

        self._modify_user(self.user_id(email), change)

    def set_department(self, email: str, department: str) -> None:
        """The enterprise extension's ``department`` (RFC 7643 §4.3), as an IdP sets it when someone moves."""

        def change(user: UserModel) -> None:
            extension = user[EnterpriseUser] or EnterpriseUser()
            extension.department = department
            user[EnterpriseUser] = extension

        self._modify_user(self.user_id(email), change)

    def set_email(self, email: str, new_email: str) -> None:
        """Change a user's userName and primary email (emails change; ids do not)."""

        def change(user: UserModel) -> None:
            user.user_name = new_email
            user.emails = [Email(value=new_email, primary=True)]

        self._modify_user(self.user_id(email), change)

    def add_to_group(self, group: str, email: str) -> None:
        """Add a user to a group, creating the group if needed; no-op if already a member."""
        with self._storage.lock:
            self._add_members(group, [self.user_id(email)])
        self._persist()

    def remove_from_group(self, group: str, email: str) -> None:
        with self._storage.lock:
            self._remove_member(self.group_id(group), self.user_id(email))
        self._persist()

    # -- faults --

    def fail_next(
        self,
        path_prefix: str,
        status: int = 503,
        count: int = 1,
        retry_after: float | str | None = None,
        *,
        scim_body: bool = True,
    ) -> None:
        """Answer the next ``count`` requests under ``path_prefix`` (e.g. ``/Users``; ``/`` for all) with
        ``status``. ``scim_body=False`` sends an HTML page instead of a SCIM error, as a proxy would."""
        self._faults.add(request_fault(path_prefix, status, count, retry_after, scim_body))

    def fail_page(
        self,
        k: int,
        status: int = 500,
        *,
        path_prefix: str = "/Users",
        retry_after: float | str | None = None,
    ) -> None:
        """Fail the k-th listing page (1 = the next) of ``GET {path_prefix}``: a provider failing mid-sync."""
        self._page_faults.add(
            PageFault(normalise(path_prefix), k, fail_status=status, retry_after=header(retry_after))
        )

    def tamper_page(
        self, k: int, fn: Callable[[dict[str, Any]], dict[str, Any]], *, path_prefix: str = "/Users"
    ) -> None:
        """Rewrite the JSON of the k-th listing page with ``fn`` (drop, repeat, change totalResults …)."""
        self._page_faults.add(PageFault(normalise(path_prefix), k, tamper=fn))

    def drop_from_next_page(self, n: int, *, path_prefix: str = "/Users") -> None:
        """The next listing page loses its first ``n`` resources (``itemsPerPage`` adjusted), as a provider
        losing entries would; ``totalResults`` and the positions stay as they were."""

        def drop(body: dict[str, Any]) -> dict[str, Any]:
            body["Resources"] = body.get("Resources", [])[n:]
            body["itemsPerPage"] = len(body["Resources"])
            return body

        self.tamper_page(1, drop, path_prefix=path_prefix)

    def before_page(self, k: int, action: Callable[[], object], *, path_prefix: str = "/Users") -> None:
        """Run ``action`` just before serving the k-th listing page: a write racing a paged sync."""
        self._page_faults.add(PageFault(normalise(path_prefix), k, before=action))

    def fail_randomly(self, spec: RandomFaults) -> FaultPlan:
        """Fail a seeded share of the requests under ``spec.prefix`` (``/`` or empty: all), answered as
        ``fail_next`` answers (a SCIM error, with ``Retry-After`` on a 429), held back past the client's
        timeout, or dropped; the plan returned counts what it injected. A call is named by its method, path
        and query (the directory's writes are not told apart by their bodies)."""
        prefix = normalise(spec.prefix or "/")
        self._faults.fail_randomly(replace(spec, prefix=prefix if prefix == "/" else prefix + "/"))
        return self._faults

    def stop_failing_randomly(self) -> None:
        self._faults.stop_failing_randomly()

    def clear_faults(self) -> None:
        self._faults.clear()
        self._page_faults.clear()

    # -- internals: WSGI --

    def _wsgi(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        path = BaseApplication.split_path(unquote(str(environ.get("PATH_INFO", "")))) or "/"
        lowered = path.rstrip("/").lower()
        query = str(environ.get("QUERY_STRING", ""))

        injected = take_fault(self._faults, lowered, method=method, call=call_name(method, path, query, b""))
        late = 0.0  # a timeout: the request is carried out, its answer held back past the client's patience
        if injected is not None and injected.delay:
            late, injected = injected.delay, None
        if injected is not None and injected.drop and not injected.after_write:
            self.requests.append(RecordedRequest(method, path, query, 0))
            return drop_connection(environ, start_response)
        answer = fault_answer(injected) if injected is not None and not injected.drop else None
        listing = answer is None and method == "GET" and lowered in LISTING_PATHS
        page_faults = self._page_faults.due(lowered) if listing else []
        if answer is None:
            for fault in page_faults:
                if fault.before is not None:
                    fault.before()
            for fault in page_faults:
                if fault.fail_status is not None:
                    answer = error_answer(
                        fault.fail_status,
                        retry_after=fault.retry_after,
                        scim_body=True,
                        detail="injected failure of a listing page",
                    )
                    break
        if answer is None:
            answer = self._serve(environ)
            status = int(answer.status.split()[0])
            tampers = [f.tamper for f in page_faults if f.tamper is not None]
            if tampers and status == 200:
                body = json.loads(answer.body)
                for tamper in tampers:
                    body = tamper(body)
                answer.body = json.dumps(body).encode()
            if method in WRITE_METHODS and 200 <= status < 300 and not lowered.endswith("/.search"):
                self._persist()

        if injected is not None and injected.drop:  # after the write: the change stays, the answer is lost
            self.requests.append(RecordedRequest(method, path, query, 0))
            return drop_connection(environ, start_response)
        status = int(answer.status.split()[0])
        self.requests.append(RecordedRequest(method, path, query, status))
        if late:
            time.sleep(late)
        headers = [(k, v) for k, v in answer.headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(answer.body))))
        start_response(answer.status, headers)
        return [answer.body]

    def _serve(self, environ: WSGIEnvironment) -> Answer:
        captured: dict[str, Any] = {}

        def capture(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        chunks: Iterable[bytes] = self._app(environ, capture)
        body = b"".join(chunks)
        return Answer(captured["status"], list(captured["headers"]), body)

    # -- internals: storage --

    def _stored(self, resource_type: str) -> list[Resource[Any]]:
        """The stored resources of a type (not copies: read only, under the storage lock when it matters)."""
        return [
            r for r in self._storage.resources if r.meta is not None and r.meta.resource_type == resource_type
        ]

    def _stored_users(self) -> list[UserModel]:
        return cast("list[UserModel]", self._stored("User"))

    def _stored_groups(self) -> list[Group]:
        return cast("list[Group]", self._stored("Group"))

    def _user(self, email: str) -> UserModel:
        wanted = email.strip().lower()
        for user in self._stored_users():
            if str(user.user_name or "").lower() == wanted or any(
                str(e.value or "").lower() == wanted for e in user.emails or []
            ):
                return user
        raise KeyError(f"no user {email!r} in the SCIM directory")

    def _group(self, name: str) -> Group | None:
        groups = self._stored_groups()
        exact = [g for g in groups if g.display_name == name]
        if exact:
            return exact[0]
        folded = [g for g in groups if str(g.display_name or "").casefold() == name.casefold()]
        return folded[0] if folded else None

    def _create_user(
        self,
        email: str,
        display_name: str,
        *,
        active: bool,
        external_id: str | None,
        manager_id: str | None = None,
    ) -> str:
        user = UserModel(
            user_name=email,
            display_name=display_name or None,
            emails=[Email(value=email, primary=True)],
            active=active,
            external_id=external_id,
        )
        if manager_id is not None:
            set_manager(user, manager_id)
        return str(self._storage.create(USER_TYPE, user).id)

    def _modify_user(self, user_id: str, change: Callable[[UserModel], None]) -> None:
        with self._storage.lock:
            user = cast(UserModel, self._storage.get(USER_TYPE, user_id))
            change(user)
            self._storage.update(USER_TYPE, user)
        self._persist()

    def _add_members(self, name: str, user_ids: list[str]) -> None:
        group = self._group(name)
        if group is None:
            self._storage.create(
                GROUP_TYPE,
                Group(display_name=name, members=[GroupMember(value=i, type="User") for i in user_ids]),
            )
            return
        stored = cast(Group, self._storage.get(GROUP_TYPE, str(group.id)))
        present = {m.value for m in stored.members or []}
        new = [GroupMember(value=i, type="User") for i in user_ids if i not in present]
        if new:
            stored.members = [*(stored.members or []), *new]
            self._storage.update(GROUP_TYPE, stored)

    def _remove_member(self, group_id: str, user_id: str) -> None:
        stored = cast(Group, self._storage.get(GROUP_TYPE, group_id))
        kept = [m for m in stored.members or [] if m.value != user_id]
        if len(kept) != len(stored.members or []):
            stored.members = kept or None
            self._storage.update(GROUP_TYPE, stored)

    # -- internals: persistence --

    def _persist(self) -> None:
        """Snapshot every resource to ``state_file`` (a no-op without one)."""
        if self.state_file is None:
            return
        with self._persist_lock:
            persistence.save(self._storage, self.state_file)
