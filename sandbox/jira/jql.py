"""The subset of JQL the stand-in understands, parsed into clauses joined by AND and an ORDER BY.

Fields: ``project``, ``labels``, ``key``/``issuekey``, ``status``, ``statusCategory``, ``issuetype``/``type``,
``assignee``, ``reporter``; operators ``=``, ``!=``, ``in (…)``, ``not in (…)``, ``is [not] empty``; then
``ORDER BY created|updated|key [ASC|DESC]``. ``OR`` and parentheses are refused with an error naming the
stand-in, so a query it cannot answer fails loudly instead of matching the wrong issues. Parsing only: the
search routes (``search.py``) check the values and match issues.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class JqlError(Exception):
    pass


class Clause(NamedTuple):
    field: str
    op: str  # =, !=, in, not in, empty, not empty
    values: tuple[str, ...]


class Query(NamedTuple):
    clauses: tuple[Clause, ...]
    order: tuple[tuple[str, bool], ...]  # (field, descending)


_JQL_TOKEN = re.compile(
    r"""\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<op>!=|=|\(|\)|,)|(?P<word>[^\s=!(),"']+))"""
)

_JQL_FIELDS = {
    "project": "project",
    "labels": "labels",
    "key": "key",
    "issuekey": "key",
    "id": "key",
    "status": "status",
    "statuscategory": "statusCategory",
    "issuetype": "issuetype",
    "type": "issuetype",
    "assignee": "assignee",
    "reporter": "reporter",
}

_JQL_ORDER = {"created": "created", "updated": "updated", "key": "key", "issuekey": "key", "id": "key"}


def parse_jql(text: str) -> Query:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _JQL_TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise JqlError(f"Error in the JQL Query: unexpected character at position {pos + 1}.")
        pos = match.end()
        if match.group("str") is not None:
            raw = match.group("str")[1:-1]
            tokens.append(("value", re.sub(r"\\(.)", r"\1", raw)))
        elif match.group("op") is not None:
            tokens.append(("op", match.group("op")))
        elif match.group("word") is not None:
            tokens.append(("word", match.group("word")))
    index = 0

    def peek(offset: int = 0) -> tuple[str, str] | None:
        return tokens[index + offset] if index + offset < len(tokens) else None

    def is_word(token: tuple[str, str] | None, *words: str) -> bool:
        return token is not None and token[0] == "word" and token[1].lower() in words

    def take_value() -> str:
        nonlocal index
        token = peek()
        if token is None or token[0] == "op":
            got = "end of query" if token is None else repr(token[1])
            raise JqlError(
                f"Error in the JQL Query: Expecting either a value, list or function but got {got}."
            )
        index += 1
        return token[1]

    clauses: list[Clause] = []
    order: list[tuple[str, bool]] = []
    if tokens and not is_word(peek(), "order"):
        while True:
            token = peek()
            if token is not None and token == ("op", "("):
                raise JqlError("The Jira stand-in does not support parentheses in JQL.")
            name = take_value()
            field_name = _JQL_FIELDS.get(name.lower())
            if field_name is None:
                raise JqlError(f"Field '{name}' does not exist or you do not have permission to view it.")
            token = peek()
            if token == ("op", "="):
                index += 1
                clauses.append(Clause(field_name, "=", (take_value(),)))
            elif token == ("op", "!="):
                index += 1
                clauses.append(Clause(field_name, "!=", (take_value(),)))
            elif is_word(token, "in") or (is_word(token, "not") and is_word(peek(1), "in")):
                negate = is_word(token, "not")
                index += 2 if negate else 1
                if peek() != ("op", "("):
                    raise JqlError("Error in the JQL Query: Expecting '(' after IN.")
                index += 1
                values = [take_value()]
                while peek() == ("op", ","):
                    index += 1
                    values.append(take_value())
                if peek() != ("op", ")"):
                    raise JqlError("Error in the JQL Query: Expecting ')' to close the list.")
                index += 1
                clauses.append(Clause(field_name, "not in" if negate else "in", tuple(values)))
            elif is_word(token, "is"):
                index += 1
                negate = is_word(peek(), "not")
                index += 1 if negate else 0
                if not is_word(peek(), "empty", "null"):
                    raise JqlError("Error in the JQL Query: Expecting EMPTY or NULL after IS.")
                index += 1
                clauses.append(Clause(field_name, "not empty" if negate else "empty", ()))
            else:
                got = "end of query" if token is None else repr(token[1])
                raise JqlError(f"Error in the JQL Query: Expecting an operator but got {got}.")
            if is_word(peek(), "and"):
                index += 1
                continue
            if is_word(peek(), "or"):
                raise JqlError("The Jira stand-in supports only AND between JQL clauses, not OR.")
            break
    if is_word(peek(), "order"):
        index += 1
        if not is_word(peek(), "by"):
            raise JqlError("Error in the JQL Query: Expecting 'BY' after 'ORDER'.")
        index += 1
        while True:
            name = take_value()
            order_field = _JQL_ORDER.get(name.lower())
            if order_field is None:
                raise JqlError(f"The Jira stand-in cannot order by '{name}'.")
            descending = False
            if is_word(peek(), "asc", "desc"):
                descending = tokens[index][1].lower() == "desc"
                index += 1
            order.append((order_field, descending))
            if peek() != ("op", ","):
                break
            index += 1
    if peek() is not None:
        raise JqlError(f"Error in the JQL Query: unexpected {tokens[index][1]!r}.")
    return Query(tuple(clauses), tuple(order))
