"""Atlassian Document Format (ADF), as far as the stand-in needs it: plain text to a document and back.

REST v3 carries descriptions and comment bodies as ADF; the stand-in stores the text beside the document so
v2 readers get a string. The conversion is lossy on purpose (marks, mentions and tables are dropped): it
never tries to render ADF faithfully, only to compare and show text.
"""

from __future__ import annotations

from typing import Any


def text_to_adf(text: str) -> dict[str, Any]:
    """Plain text as an ADF document: paragraphs at blank lines, hard breaks at single newlines."""
    content = []
    for paragraph in text.split("\n\n"):
        inline: list[dict[str, Any]] = []
        for n, line in enumerate(paragraph.split("\n")):
            if n:
                inline.append({"type": "hardBreak"})
            if line:
                inline.append({"type": "text", "text": line})
        content.append({"type": "paragraph", "content": inline})
    return {"type": "doc", "version": 1, "content": content}


def adf_to_text(node: Any) -> str:
    """The text of an ADF document (blocks separated by blank lines), good enough for comparisons."""
    if not isinstance(node, dict):
        return ""
    kind = node.get("type")
    if kind == "text":
        return str(node.get("text", ""))
    if kind == "hardBreak":
        return "\n"
    children = node.get("content") or []
    if kind in ("doc", "bulletList", "orderedList", "listItem", "blockquote", "panel"):
        return "\n\n".join(adf_to_text(c) for c in children)
    return "".join(adf_to_text(c) for c in children)


def is_adf(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and value.get("type") == "doc"
        and value.get("version") == 1
        and isinstance(value.get("content"), list)
    )
