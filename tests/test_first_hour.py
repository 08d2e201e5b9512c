"""A newcomer's first hour (issue #9, items 10-13): what the README promises works as written.

- Every module the installed package imports (``grantflow dev --with slack --with jira --with email``
  included) comes from the main dependencies, so ``pip install .`` is enough (no test extra).
- The API docs work offline (Swagger UI's assets are served by the app) and ``/`` leads somewhere.
- The CLI finds the stack from any folder inside the project, and says how to point it when it cannot.
- A second ``grantflow dev`` leaves the running one alone and says which stack runs and where.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from packaging.requirements import Requirement

from configuration.settings import Settings
from grantflow.client import ClientConfigError, resolve_token
from tests.test_dev_stack import PORTS, DevStack, _free_port
from web.app import WebContext, create_app

REPO_ROOT = Path(__file__).resolve().parents[1]


# --- item 11: the README's install is enough ------------------------------------------------------


def _installed_packages() -> list[str]:
    """The import packages ``pip install .`` installs (pyproject's package list), and worker.py."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    return [p.rstrip("*") for p in patterns]


def _runtime_imports(path: Path) -> set[str]:
    """Top-level names of absolute imports in a module, leaving out those only type checkers see."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only |= {id(child) for stmt in node.body for child in ast.walk(stmt)}
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _main_dependency_closure(*extras: str) -> set[str]:
    """Every distribution ``pip install .`` (``.[extra,…]``) brings: the main dependencies, those of the
    extras named, and what they require."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    specs = pyproject["project"]["dependencies"]
    for extra in extras:
        specs = specs + pyproject["project"]["optional-dependencies"][extra]
    pending = [Requirement(spec) for spec in specs]
    seen: set[str] = set()
    while pending:
        requirement = pending.pop()
        name = _canonical(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(requirement.name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed here: it cannot provide anything we import anyway
        for spec in requires:
            dependency = Requirement(spec)
            wanted = [{"extra": extra} for extra in requirement.extras] or [{"extra": ""}]
            if dependency.marker is None or any(dependency.marker.evaluate(env) for env in wanted):
                pending.append(dependency)
    return seen


def test_everything_the_package_imports_comes_with_its_main_dependencies() -> None:
    """Main dependencies, or an extra a deployment opts into — never the test extra alone."""
    first_party = set(_installed_packages()) | {"worker", "tests"}
    providers = importlib.metadata.packages_distributions()
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    deployment_extras = [e for e in pyproject["project"].get("optional-dependencies", {}) if e != "test"]
    installed = _main_dependency_closure(*deployment_extras)
    missing: dict[str, set[str]] = {}
    files = [REPO_ROOT / "worker.py"]
    for package in _installed_packages():
        files += sorted((REPO_ROOT / package).rglob("*.py"))
    for path in files:
        for name in _runtime_imports(path):
            if name in first_party or name in sys.stdlib_module_names or name == "__future__":
                continue
            if not {_canonical(d) for d in providers.get(name, [])} & installed:
                missing.setdefault(name, set()).add(str(path.relative_to(REPO_ROOT)))
    assert not missing, (
        "imported by the package but not brought by `pip install .` (add to [project] dependencies, or to "
        "an extra other than test): "
        + "; ".join(f"{name} (in {', '.join(sorted(where))})" for name, where in sorted(missing.items()))
    )


def test_the_dev_channel_stand_ins_import_from_the_main_dependencies() -> None:
    """What ``grantflow dev --with slack --with jira --with email`` imports, in a fresh interpreter whose
    test-only packages are hidden (as after ``pip install .``)."""
    test_only = {
        _canonical(Requirement(spec).name)
        for spec in tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"][
            "optional-dependencies"
        ]["test"]
    } - _main_dependency_closure()
    hidden = sorted(
        name
        for name, dists in importlib.metadata.packages_distributions().items()
        if {_canonical(d) for d in dists} & test_only
    )
    code = (
        "import sys\n"
        f"for name in {hidden!r}:\n"
        "    sys.modules[name] = None  # an ImportError, as if it were not installed\n"
        "import grantflow.dev, sandbox.slack, sandbox.jira, sandbox.smtp, sandbox.hoop, sandbox.scim\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# --- item 13: the API docs work offline; / leads somewhere ----------------------------------------


def _app(**kwargs: Any) -> Any:
    """The app with a context whose parts these routes never use (docs, assets, /, health)."""
    context = WebContext(
        **{name: cast(Any, None) for name in WebContext.__dataclass_fields__}
        | {
            "settings": Settings(state_dir=REPO_ROOT / ".no-state"),
            "csrf_key": b"k" * 32,
            "secure_cookies": False,
            "owns_store": False,
        }
    )
    return create_app(context, **kwargs)


async def _get(app: Any, path: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        return await http.get(path)


async def test_swagger_ui_is_served_by_the_app_itself() -> None:
    app = _app()
    docs = await _get(app, "/api/v1/docs")
    assert docs.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert sources and not [s for s in sources if "://" in s], (
        f"the docs page loads from elsewhere: {sources}"
    )
    for asset in sources:
        served = await _get(app, asset)
        assert served.status_code == 200 and len(served.content) > 100, asset
    assert any(s.endswith("swagger-ui-bundle.js") for s in sources)
    openapi_url = re.search(r"url: '([^']+)'", docs.text)
    assert openapi_url is not None and (await _get(app, openapi_url.group(1))).json()["info"]["title"]


async def test_the_root_page_links_the_docs_health_and_what_dev_runs() -> None:
    bare = await _get(_app(), "/")
    assert bare.status_code == 200 and bare.headers["content-type"].startswith("text/html")
    assert 'href="/api/v1/docs"' in bare.text and 'href="/healthz"' in bare.text
    dev = await _get(
        _app(home_links=[("Temporal UI", "http://127.0.0.1:8233"), ("state", "/x/<.grantflow>")]), "/"
    )
    assert 'Temporal UI: <a href="http://127.0.0.1:8233">' in dev.text
    assert "/x/&lt;.grantflow&gt;" in dev.text  # text, escaped


# --- item 12: the CLI finds the stack from any folder inside the project ---------------------------


def test_settings_find_the_nearest_state_folder_above(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / ".grantflow"
    state.mkdir()
    (state / "secrets.toml").write_text('ledger_key = "from-the-dev-stack"\n')
    deep = tmp_path / "services" / "api"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    settings = Settings()
    assert settings.state_dir == state.resolve()
    assert settings.ledger_key is not None and settings.ledger_key.get_secret_value() == "from-the-dev-stack"
    monkeypatch.setenv("GRANTFLOW_STATE_DIR", str(tmp_path / "elsewhere"))
    assert Settings().state_dir == tmp_path / "elsewhere"  # an explicit folder wins


def test_without_a_stack_the_cli_says_what_it_looked_for_and_how_to_point_it(tmp_path: Path) -> None:
    folder = tmp_path / "no" / "stack" / "here"
    folder.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRANTFLOW_")}
    done = subprocess.run(
        [sys.executable, "-m", "grantflow", "request", "list"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    message = " ".join(done.stderr.split())
    assert f"looked for a .grantflow/ folder in {folder} and every folder above it" in message
    assert "GRANTFLOW_STATE_DIR" in message and "GRANTFLOW_API_URL" in message


def test_an_explicit_state_folder_without_a_token_keeps_the_token_message(tmp_path: Path) -> None:
    with pytest.raises(ClientConfigError, match="no API token: set GRANTFLOW_API_TOKEN"):
        resolve_token(Settings(state_dir=tmp_path / "configured"))


def test_user_acts_with_their_own_token_from_the_people_folder(tmp_path: Path) -> None:
    state = tmp_path / "configured"
    (state / "people").mkdir(parents=True)
    (state / "people" / "bob@example.com.token").write_text("gft_bobs_own\n")
    settings = Settings(state_dir=state, api_token="gft_admin", user="Bob@Example.com")
    assert resolve_token(settings) == "gft_bobs_own"  # --user wins over GRANTFLOW_API_TOKEN
    with pytest.raises(ClientConfigError, match=r"no token for carol@example\.com in .*people"):
        resolve_token(settings.model_copy(update={"user": "carol@example.com"}))


# --- item 10: a second grantflow dev leaves the running one alone ----------------------------------


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _refused_start(stack: DevStack) -> str:
    """Start ``stack`` expecting grantflow dev to exit at once; returns what it printed."""
    with pytest.raises(AssertionError, match="grantflow dev exited"):
        stack.start()
    assert stack.process is not None and stack.process.returncode != 0
    return " ".join((stack.cwd / "dev.out").read_text().split())


@pytest.mark.e2e
def test_a_second_grantflow_dev_touches_nothing_and_says_which_stack_runs_where(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    first = DevStack(cwd=tmp_path, ports={name: _free_port() for name in PORTS})
    first.start()
    try:
        state = tmp_path / ".grantflow"
        temporal_pid = int((state / "temporal.pid").read_text())
        web = f"http://127.0.0.1:{first.ports['web']}"

        # In the same folder, on the same ports (the first one's log is moved aside: the rig reads
        # dev.out to tell whether a stack came up).
        (tmp_path / "dev.out").rename(tmp_path / "first.out")
        said = _refused_start(DevStack(cwd=tmp_path, ports=first.ports))
        assert f"grantflow dev is already running on the state folder {state}" in said

        # The same project, from a folder inside it (what a newcomer does in a second terminal).
        inside = tmp_path / "services" / "api"
        inside.mkdir(parents=True)
        said = _refused_start(DevStack(cwd=inside, ports=first.ports))
        assert f"grantflow dev is already running on the state folder {state}" in said
        assert f"in {tmp_path}" in said and f"web app and API {web}/" in said
        assert f"Temporal 127.0.0.1:{first.ports['temporal']}" in said and "Nothing was touched" in said
        assert not (inside / ".grantflow").exists()

        # Another project on the same ports: the ports' holders are named, with their folders.
        elsewhere = tmp_path_factory.mktemp("another-project")
        said = _refused_start(DevStack(cwd=elsewhere, ports=first.ports))
        assert first.process is not None
        assert (
            f"{first.ports['web']} (--web-port: grantflow dev, pid {first.process.pid}, in {tmp_path})"
            in said
        )
        assert f"the Temporal server of the grantflow dev on {state}, pid {temporal_pid}" in said

        # The first stack is untouched: its Temporal server (the pid file's) still runs and answers,
        # and the CLI reaches it from the folder inside the project without being pointed at it.
        assert Path(f"/proc/{temporal_pid}").exists() and _answers(first.ports["temporal"])
        assert int((state / "temporal.pid").read_text()) == temporal_pid
        env = {k: v for k, v in first.env.items() if k != "GRANTFLOW_API_URL"}
        listed = subprocess.run(
            [sys.executable, "-m", "grantflow", "request", "list", "--json"],
            cwd=inside,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listed.returncode == 0, listed.stderr
        home = httpx.get(f"{web}/", timeout=10)
        assert "grantflow dev runs" in home.text and f"http://127.0.0.1:{first.ports['ui']}" in home.text
    finally:
        first.stop()
