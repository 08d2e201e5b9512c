"""Slack's Block Kit validation, the part grantflow can trip over, for messages and modal views.

Errors are Slack's sentences with a JSON pointer (``must be less than 76 characters
[json-pointer:/blocks/2/elements/0/text/text]``), which the Web API methods answer as ``invalid_blocks`` or
``invalid_arguments``. This module only judges blocks; it never stores or answers anything.
"""

from __future__ import annotations

from typing import Any

# Slack's limits, kept here independently of the adapter's own copy so that each checks the other.
MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_SECTION_TEXT = 3000
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS_ELEMENTS = 25
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_URL = 3000
MAX_ID = 255
MAX_LABEL = 2000
MAX_MARKDOWN_BLOCK = 12_000
MAX_VIEW_TITLE = 24
MAX_PRIVATE_METADATA = 3000


class BlockChecker:
    """Slack's Block Kit validation, the part grantflow can trip over. Errors are Slack's sentences with a
    JSON pointer, e.g. ``must be less than 76 characters [json-pointer:/blocks/2/elements/0/text/text]``."""

    _BLOCK_KEYS: dict[str, set[str]] = {
        "section": {"type", "block_id", "text", "fields", "accessory", "expand"},
        "header": {"type", "block_id", "text"},
        "divider": {"type", "block_id"},
        "context": {"type", "block_id", "elements"},
        "actions": {"type", "block_id", "elements"},
        "input": {"type", "block_id", "label", "element", "hint", "optional", "dispatch_action"},
        "image": {"type", "block_id", "image_url", "alt_text", "title", "slack_file"},
        "markdown": {"type", "block_id", "text"},
        "rich_text": {"type", "block_id", "elements"},
    }
    _BUTTON_KEYS = {"type", "text", "action_id", "url", "value", "style", "confirm", "accessibility_label"}
    _CONFIRM_KEYS = {"title", "text", "confirm", "deny", "style"}

    def __init__(self) -> None:
        self.errors: list[str] = []

    def _err(self, message: str, pointer: str) -> None:
        self.errors.append(f"{message} [json-pointer:{pointer}]")

    def _max(self, value: str, limit: int, pointer: str) -> None:
        if len(value) > limit:
            self._err(f"must be less than {limit + 1} characters", pointer)

    def _keys(self, obj: dict[str, Any], allowed: set[str], pointer: str) -> None:
        for key in obj:
            if key not in allowed:
                self._err(f"invalid additional property: {key}", pointer)

    def text_object(
        self, obj: Any, pointer: str, *, limit: int, plain_only: bool = False, required: bool = True
    ) -> None:
        if obj is None:
            if required:
                self._err("missing required field: text", pointer)
            return
        if not isinstance(obj, dict):
            self._err("must provide an object", pointer)
            return
        kind = obj.get("type")
        allowed_types = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
        if kind not in allowed_types:
            self._err(f"must be one of {', '.join(allowed_types)}", f"{pointer}/type")
        self._keys(obj, {"type", "text", "emoji", "verbatim"}, pointer)
        text = obj.get("text")
        if not isinstance(text, str):
            self._err("must provide a string", f"{pointer}/text")
            return
        if not text:
            self._err("must be more than 0 characters", f"{pointer}/text")
        self._max(text, limit, f"{pointer}/text")

    def element(self, el: Any, pointer: str, action_ids: set[str] | None) -> None:
        if not isinstance(el, dict) or not isinstance(el.get("type"), str):
            self._err("must provide an object with a type", pointer)
            return
        action_id = el.get("action_id")
        if action_id is not None:
            if not isinstance(action_id, str) or not action_id:
                self._err("must provide a non-empty string", f"{pointer}/action_id")
            else:
                self._max(action_id, MAX_ID, f"{pointer}/action_id")
                if action_ids is not None:
                    if action_id in action_ids:
                        self._err(f"duplicate action_id: {action_id}", f"{pointer}/action_id")
                    action_ids.add(action_id)
        if el["type"] == "button":
            self._keys(el, self._BUTTON_KEYS, pointer)
            self.text_object(el.get("text"), f"{pointer}/text", limit=MAX_BUTTON_TEXT, plain_only=True)
            value = el.get("value")
            if value is not None:
                if not isinstance(value, str):
                    self._err("must provide a string", f"{pointer}/value")
                else:
                    self._max(value, MAX_BUTTON_VALUE, f"{pointer}/value")
            url = el.get("url")
            if url is not None:
                self._max(str(url), MAX_URL, f"{pointer}/url")
            style = el.get("style")
            if style is not None and style not in ("primary", "danger"):
                self._err("must be one of primary, danger", f"{pointer}/style")
            confirm = el.get("confirm")
            if confirm is not None:
                self.confirm(confirm, f"{pointer}/confirm")
        elif el["type"] == "plain_text_input":
            max_length = el.get("max_length")
            if max_length is not None and (not isinstance(max_length, int) or not 1 <= max_length <= 3000):
                self._err("must be between 1 and 3000", f"{pointer}/max_length")

    def confirm(self, obj: Any, pointer: str) -> None:
        if not isinstance(obj, dict):
            self._err("must provide an object", pointer)
            return
        self._keys(obj, self._CONFIRM_KEYS, pointer)
        self.text_object(obj.get("title"), f"{pointer}/title", limit=100, plain_only=True)
        self.text_object(obj.get("text"), f"{pointer}/text", limit=300)
        self.text_object(obj.get("confirm"), f"{pointer}/confirm", limit=30, plain_only=True)
        self.text_object(obj.get("deny"), f"{pointer}/deny", limit=30, plain_only=True)

    def blocks(self, blocks: Any, *, max_blocks: int, pointer: str = "/blocks") -> None:
        if not isinstance(blocks, list):
            self._err("must provide an array", pointer)
            return
        if len(blocks) > max_blocks:
            self._err(f"must be less than {max_blocks + 1} items", pointer)
        block_ids: set[str] = set()
        for i, block in enumerate(blocks):
            self.block(block, f"{pointer}/{i}", block_ids)

    def block(self, block: Any, pointer: str, block_ids: set[str]) -> None:
        if not isinstance(block, dict):
            self._err("must provide an object", pointer)
            return
        kind = block.get("type")
        if kind not in self._BLOCK_KEYS:
            self._err(f"unsupported type: {kind}", f"{pointer}/type")
            return
        self._keys(block, self._BLOCK_KEYS[kind], pointer)
        block_id = block.get("block_id")
        if block_id is not None:
            if not isinstance(block_id, str) or not block_id:
                self._err("must provide a non-empty string", f"{pointer}/block_id")
            else:
                self._max(block_id, MAX_ID, f"{pointer}/block_id")
                if block_id in block_ids:
                    self._err(f"duplicate block_id: {block_id}", f"{pointer}/block_id")
                block_ids.add(block_id)
        if kind == "section":
            text, fields = block.get("text"), block.get("fields")
            if text is None and not fields:
                self._err("must provide either text or fields", pointer)
            if text is not None:
                self.text_object(text, f"{pointer}/text", limit=MAX_SECTION_TEXT)
            if fields is not None:
                if not isinstance(fields, list):
                    self._err("must provide an array", f"{pointer}/fields")
                else:
                    if len(fields) > MAX_FIELDS:
                        self._err(f"must be less than {MAX_FIELDS + 1} items", f"{pointer}/fields")
                    for j, f in enumerate(fields):
                        self.text_object(f, f"{pointer}/fields/{j}", limit=MAX_FIELD_TEXT)
            if block.get("accessory") is not None:
                self.element(block["accessory"], f"{pointer}/accessory", set())
        elif kind == "header":
            self.text_object(block.get("text"), f"{pointer}/text", limit=MAX_HEADER_TEXT, plain_only=True)
        elif kind == "markdown":
            text = block.get("text")
            if not isinstance(text, str) or not text:
                self._err("must provide a non-empty string", f"{pointer}/text")
            else:
                self._max(text, MAX_MARKDOWN_BLOCK, f"{pointer}/text")
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not elements:
                self._err("must provide a non-empty array", f"{pointer}/elements")
                return
            if len(elements) > MAX_CONTEXT_ELEMENTS:
                self._err(f"must be less than {MAX_CONTEXT_ELEMENTS + 1} items", f"{pointer}/elements")
            for j, el in enumerate(elements):
                if isinstance(el, dict) and el.get("type") == "image":
                    continue
                self.text_object(el, f"{pointer}/elements/{j}", limit=MAX_FIELD_TEXT)
        elif kind == "actions":
            elements = block.get("elements")
            if not isinstance(elements, list) or not elements:
                self._err("must provide a non-empty array", f"{pointer}/elements")
                return
            if len(elements) > MAX_ACTIONS_ELEMENTS:
                self._err(f"must be less than {MAX_ACTIONS_ELEMENTS + 1} items", f"{pointer}/elements")
            action_ids: set[str] = set()
            for j, el in enumerate(elements):
                self.element(el, f"{pointer}/elements/{j}", action_ids)
        elif kind == "input":
            self.text_object(block.get("label"), f"{pointer}/label", limit=MAX_LABEL, plain_only=True)
            if block.get("hint") is not None:
                self.text_object(block["hint"], f"{pointer}/hint", limit=MAX_LABEL, plain_only=True)
            if block.get("element") is None:
                self._err("missing required field: element", pointer)
            else:
                self.element(block["element"], f"{pointer}/element", set())

    def view(self, view: Any) -> None:
        if not isinstance(view, dict):
            self._err("must provide an object", "/view")
            return
        allowed = {
            "type",
            "title",
            "blocks",
            "close",
            "submit",
            "private_metadata",
            "callback_id",
            "clear_on_close",
            "notify_on_close",
            "external_id",
            "submit_disabled",
        }
        self._keys(view, allowed, "/view")
        if view.get("type") != "modal":
            self._err("must be one of modal", "/view/type")
        self.text_object(view.get("title"), "/view/title", limit=MAX_VIEW_TITLE, plain_only=True)
        for key in ("close", "submit"):
            if view.get(key) is not None:
                self.text_object(view[key], f"/view/{key}", limit=MAX_VIEW_TITLE, plain_only=True)
        blocks = view.get("blocks")
        self.blocks(blocks, max_blocks=MAX_VIEW_BLOCKS, pointer="/view/blocks")
        if (
            isinstance(blocks, list)
            and any(isinstance(b, dict) and b.get("type") == "input" for b in blocks)
            and view.get("submit") is None
        ):
            self._err("must provide submit when the view has input blocks", "/view/submit")
        for key, limit in (("private_metadata", MAX_PRIVATE_METADATA), ("callback_id", MAX_ID)):
            value = view.get(key)
            if value is not None:
                if not isinstance(value, str):
                    self._err("must provide a string", f"/view/{key}")
                else:
                    self._max(value, limit, f"/view/{key}")


def block_kit_errors(blocks: Any = None, *, view: Any = None) -> list[str]:
    """What Slack would answer about these message ``blocks`` (or this modal ``view``): the sentences of
    ``invalid_blocks``/``invalid_arguments``, empty when Slack would accept them. For template tests."""
    checker = BlockChecker()
    if view is not None:
        checker.view(view)
    else:
        checker.blocks(blocks, max_blocks=MAX_MESSAGE_BLOCKS)
    return checker.errors
