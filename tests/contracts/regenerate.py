"""Write ``tests/contracts/{hoop,jira,slack}.json`` from the vendor specs in ``../shared/specs``.

    python -m tests.contracts.regenerate            # rewrite the frozen files
    python -m tests.contracts.regenerate --check    # exit 1 if any of them is not what the specs give

The contract tests check the local stand-ins against these frozen files, so they run in a fresh clone, which
has no ``../shared/specs``. Each file keeps, in the spec's own layout: the operations a stand-in serves (the
lists below), every schema reachable from them and from the components the tests name, the security
schemes verbatim, and the method and path of every other operation (so a request is routed exactly as the
full spec would route it). Documentation nothing checks (descriptions, summaries, examples, tags,
operation ids, ``x-`` extensions) is left out, except the few sentences of prose a test quotes. The output
is JSON with sorted keys and one-space indents, so a regeneration shows as a readable diff.

Change a list below when a stand-in starts serving another operation, or a test names another component,
then run this with the specs present. Only the standard library is used, so it runs as a plain script too.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONTRACTS_DIR = Path(__file__).resolve().parent
SPECS_DIR = CONTRACTS_DIR.parents[2] / "shared" / "specs"
COMMAND = "python -m tests.contracts.regenerate"

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Keys whose value maps names (of properties, paths, statuses, media types, schemas…) to objects: a name
# there is never a keyword, so a property called "description" stays.
NAME_MAPS = frozenset(
    {
        "properties",
        "patternProperties",
        "definitions",
        "paths",
        "responses",
        "content",
        "headers",
        "schemas",
        "parameters",
        "requestBodies",
        "securitySchemes",
        "securityDefinitions",
        "mapping",
    }
)
# Values that are data, not schemas: copied as they are.
DATA = frozenset({"enum", "default", "const", "required"})
# Documentation keywords that no validator reads.
DOCUMENTATION = frozenset({"description", "summary", "title", "example", "examples", "externalDocs", "tags"})
DROPPED = DOCUMENTATION | {"operationId"}


@dataclass(frozen=True)
class Contract:
    """What to freeze of one spec.

    spec        the file in ``../shared/specs``
    operations  "METHOD /template" of each operation the stand-in serves
    components  schemas a test names directly (reachable ones come along by themselves)
    prose       key paths of documentation a test quotes, kept verbatim
    """

    spec: str
    operations: tuple[str, ...]
    components: tuple[str, ...] = ()
    prose: tuple[tuple[str, ...], ...] = ()


CONTRACTS: dict[str, Contract] = {
    # sandbox/hoop/'s routes (the /api/_sandbox ones are the stand-in's own)
    "hoop": Contract(
        spec="hoop-openapiv3.json",
        operations=(
            "GET /sessions",
            "POST /sessions/provision",
            "GET /sessions/{session_id}",
            "POST /sessions/{session_id}/kill",
            "GET /reviews",
            "GET /reviews/{id}",
            "PUT /reviews/{id}",
            "GET /connections",
            "GET /connections/{nameOrID}",
            "GET /attributes",
            "GET /plugins/{name}",
            "GET /users",
            "GET /users/groups",
            "GET /users/{emailOrID}",
            "PUT /users/{emailOrID}",
            "GET /access-requests/rules",
            "GET /api-keys",
            "GET /api-keys/{nameOrID}",
            "PUT /api-keys/{nameOrID}",
            "DELETE /api-keys/{nameOrID}",
            "GET /ai-agents",
            "GET /ai-agents/{nameOrID}",
            "PUT /ai-agents/{nameOrID}",
            "DELETE /ai-agents/{nameOrID}",
            "GET /serviceaccounts",
            "POST /serviceaccounts",
            "PUT /serviceaccounts/{subject}",
            "GET /machineidentities",
            "POST /machineidentities",
            "GET /machineidentities/{name}",
            "PUT /machineidentities/{name}",
            "DELETE /machineidentities/{name}",
            "GET /machineidentities/{name}/credentials",
            "POST /machineidentities/{name}/credentials/{connectionName}/rotate",
        ),
        # named by test_hoop_contract.py's KNOWN_DIFFERENCES and negative tests
        components=(
            "openapi.HTTPError",
            "openapi.PaginatedResponse-openapi_Connection",
            "openapi.Review",
            "openapi.ReviewGroup",
        ),
        # test_known_behaviour quotes these to show the prose says otherwise than the gateway does
        prose=(
            ("paths", "/reviews/{id}", "put", "description"),
            ("components", "schemas", "openapi.Review", "properties", "revoke_at", "description"),
        ),
    ),
    # sandbox/jira/'s routes (served under /rest/api/2, /3 and /latest; checked against v3). GET and POST
    # /search/jql are served too, but the spec predates them: test_jira_contract.py lists them as a
    # difference.
    "jira": Contract(
        spec="jira-platform-v3.json",
        operations=(
            "GET /rest/api/3/serverInfo",
            "GET /rest/api/3/myself",
            "GET /rest/api/3/field",
            "GET /rest/api/3/project/{projectIdOrKey}",
            "POST /rest/api/3/issue",
            "GET /rest/api/3/issue/{issueIdOrKey}",
            "PUT /rest/api/3/issue/{issueIdOrKey}",
            "GET /rest/api/3/issue/{issueIdOrKey}/transitions",
            "POST /rest/api/3/issue/{issueIdOrKey}/transitions",
            "GET /rest/api/3/issue/{issueIdOrKey}/comment",
            "POST /rest/api/3/issue/{issueIdOrKey}/comment",
            "GET /rest/api/3/user",
            "GET /rest/api/3/user/search",
            "GET /rest/api/3/search",
            "POST /rest/api/3/search",
        ),
        # named by test_jira_contract.py: the /search/jql answer, the objects inside IssueBean.fields, error
        # bodies
        components=(
            "IssueBean",
            "StatusDetails",
            "IssueTypeDetails",
            "ProjectDetails",
            "UserDetails",
            "Resolution",
            "PageOfComments",
            "ErrorCollection",
        ),
    ),
    # sandbox/slack/'s methods (apps.connections.open is newer than the spec). The verb is the spec's; the
    # Slack check ignores verbs.
    "slack": Contract(
        spec="slack-web-openapi-v2.json",
        operations=(
            "GET /auth.test",
            "POST /conversations.open",
            "GET /conversations.history",
            "POST /chat.postMessage",
            "POST /chat.update",
            "POST /chat.postEphemeral",
            "GET /users.lookupByEmail",
            "GET /users.info",
            "GET /views.open",
        ),
    ),
}


class SpecError(Exception):
    """The spec lacks something a contract asks for."""


def provenance(specs_dir: Path, spec_file: str) -> str:
    """The "source" cell of the spec's row in ``../shared/specs/README.md``."""
    readme = specs_dir / "README.md"
    for line in readme.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0] == f"`{spec_file}`":
            return cells[1]
    raise SpecError(f"{readme} has no row for {spec_file}")


def _strip(node: Any, path: tuple[str, ...], keep: frozenset[tuple[str, ...]], names: bool = False) -> Any:
    """``node`` without the documentation keywords, ``path`` being where it sits in the spec; ``names``
    when its keys are names (of properties, statuses…) rather than keywords."""
    if isinstance(node, list):
        return [_strip(item, path, keep) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        here = (*path, key)
        if names:
            out[key] = _strip(value, here, keep)
        elif here in keep or key in DATA:
            out[key] = copy.deepcopy(value)
        elif key in DROPPED or key.startswith("x-"):
            continue
        else:
            out[key] = _strip(value, here, keep, names=key in NAME_MAPS)
    return out


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield ref
        for key, value in node.items():
            if key not in DATA:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _pointer(ref: str) -> tuple[str, ...]:
    if not ref.startswith("#/"):
        raise SpecError(f"only local $refs are supported, not {ref!r}")
    return tuple(part.replace("~1", "/").replace("~0", "~") for part in ref[2:].split("/"))


def _get(tree: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = tree
    for part in path:
        if not isinstance(node, dict) or part not in node:
            raise SpecError(f"the spec has nothing at {'/'.join(path)}")
        node = node[part]
    return node


def _has(tree: dict[str, Any], path: tuple[str, ...]) -> bool:
    try:
        _get(tree, path)
    except SpecError:
        return False
    return True


def _put(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def _operations(spec: dict[str, Any]) -> Iterator[str]:
    for template, item in spec["paths"].items():
        for method in item:
            if method in HTTP_METHODS:
                yield f"{method.upper()} {template}"


def freeze(contract: Contract, specs_dir: Path = SPECS_DIR) -> dict[str, Any]:
    """The frozen file's content for ``contract``, from the spec in ``specs_dir``."""
    raw = (specs_dir / contract.spec).read_bytes()
    spec: dict[str, Any] = json.loads(raw)
    keep = frozenset(contract.prose)
    swagger = "swagger" in spec
    schemas = ("definitions",) if swagger else ("components", "schemas")
    security = ("securityDefinitions",) if swagger else ("components", "securitySchemes")

    out: dict[str, Any] = {"info": {k: spec["info"][k] for k in ("title", "version") if k in spec["info"]}}
    out["swagger" if swagger else "openapi"] = spec["swagger" if swagger else "openapi"]
    if _has(spec, security):
        _put(out, security, copy.deepcopy(_get(spec, security)))

    for operation in contract.operations:
        method, template = operation.split(" ", 1)
        item = spec["paths"].get(template, {})
        if method.lower() not in item:
            raise SpecError(f"{contract.spec} has no operation {operation}")
        path = ("paths", template, method.lower())
        _put(out, path, _strip(item[method.lower()], path, keep))
        if "parameters" in item:  # shared by every operation of the path
            _put(
                out,
                ("paths", template, "parameters"),
                _strip(item["parameters"], (*path[:2], "parameters"), keep),
            )

    # every $ref resolves in the frozen file: follow them from the operations and the named components
    pending = [(*schemas, name) for name in contract.components]
    pending += [_pointer(ref) for ref in _refs(out)]
    done: set[tuple[str, ...]] = set()
    while pending:
        target = pending.pop()
        if target in done:
            continue
        done.add(target)
        value = _strip(_get(spec, target), target, keep)
        _put(out, target, value)
        pending += [_pointer(ref) for ref in _refs(value)]

    for quoted in contract.prose:
        if _get(out, quoted) != _get(spec, quoted):
            raise SpecError(f"the prose at {'/'.join(quoted)} is not in a frozen part of {contract.spec}")

    frozen_ops = set(contract.operations)
    return {
        "source": {
            "spec": contract.spec,
            "sha256": hashlib.sha256(raw).hexdigest(),
            "upstream": provenance(specs_dir, contract.spec),
            "regenerate": COMMAND,
        },
        "spec": out,
        "not_frozen": sorted(op for op in _operations(spec) if op not in frozen_ops),
    }


def render(frozen: dict[str, Any]) -> str:
    """One stable layout: sorted keys, one-space indents, a final newline."""
    return json.dumps(frozen, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def regenerated(specs_dir: Path = SPECS_DIR) -> dict[str, str]:
    """The text of each frozen file (by contract name) as the specs in ``specs_dir`` give it."""
    return {name: render(freeze(contract, specs_dir)) for name, contract in CONTRACTS.items()}


def missing_specs(specs_dir: Path = SPECS_DIR) -> list[Path]:
    wanted = [specs_dir / "README.md", *(specs_dir / c.spec for c in CONTRACTS.values())]
    return [path for path in wanted if not path.is_file()]


def frozen_path(name: str) -> Path:
    return CONTRACTS_DIR / f"{name}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="do not write: exit 1 if a file is stale")
    parser.add_argument(
        "--specs", type=Path, default=SPECS_DIR, help=f"the specs folder (default {SPECS_DIR})"
    )
    args = parser.parse_args(argv)

    missing = missing_specs(args.specs)
    if missing:
        print(
            "cannot regenerate tests/contracts: the vendor specs are missing:\n"
            + "".join(f"  {path}\n" for path in missing)
            + "They live in the shared folder beside the repository (../shared/specs, described by its "
            "README.md);\nput it there, or pass --specs DIR. The committed frozen files are left as they "
            "are.",
            file=sys.stderr,
        )
        return 2
    try:
        texts = regenerated(args.specs)
    except SpecError as error:
        print(f"cannot regenerate tests/contracts: {error}", file=sys.stderr)
        return 2

    stale = [name for name, text in texts.items() if _current(name) != text]
    for name in stale:
        path = frozen_path(name)
        if args.check:
            print(f"{path} is stale: run {COMMAND}", file=sys.stderr)
        else:
            path.write_text(texts[name], encoding="utf-8")
            print(f"wrote {path} ({len(texts[name].encode()):,} bytes)")
    if not stale:
        print("tests/contracts is up to date with " + ", ".join(c.spec for c in CONTRACTS.values()))
    return 1 if args.check and stale else 0


def _current(name: str) -> str | None:
    path = frozen_path(name)
    return path.read_text(encoding="utf-8") if path.exists() else None


if __name__ == "__main__":
    sys.exit(main())
