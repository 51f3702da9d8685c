"""Tools an agentic env offers, and reading tool calls out of a completion.

    spec = ToolSpec("python", "Run Python code in a stateful interpreter.",
                    {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]})
    parsed = get_parser("hermes").parse(completion_text)     # or parser_for(model_name)
    parsed.calls          # [ToolCall(name="python", arguments={"code": "..."})]
    parsed.errors         # malformed calls, as messages for the model
    check_arguments(spec, call.arguments)                    # None, or what is wrong (for the tool reply)

A spec's ``parameters`` is a JSON schema of the subset tool specs use (``type``, ``properties``,
``required``, ``additionalProperties``, ``enum``, ``items``, ``description``, ``default``, ``minimum``,
``maximum``); a spec using anything else is refused when it is made, naming the keyword, so what the model
is told and what is checked never differ.

Parsers, one per model family's tool-call format (``PARSERS``; ``register_parser`` adds one):
- ``hermes`` (the default; Qwen2.5/3, Hermes, SmolLM3): ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``
  blocks anywhere in the text;
- ``llama3_json`` (Llama 3.1/3.2): the whole completion (after an optional ``<|python_tag|>``) is one JSON
  object ``{"name": ..., "parameters": {...}}``, or several separated by ``;``.
A completion with no call in its family's syntax is a final answer. A call that is started but cannot be
read (unclosed tag, bad JSON, no name, arguments not an object) is an error reported to the model as the
tool's reply, never an exception.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

from evalgym.errors import EvalgymError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_SCHEMA_KEYS = {"type", "properties", "required", "additionalProperties", "enum", "items", "description", "default",
                "minimum", "maximum", "title"}
_TYPES = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,), "object": (dict,),
          "array": (list,), "null": (type(None),)}


@dataclass(frozen=True)
class ToolSpec:
    """One tool: ``name`` (what the model calls), ``description`` and ``parameters`` (a JSON schema object)."""

    name: str
    description: str
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise EvalgymError(f"tool name {self.name!r}: letters, digits, _ . - only, starting with a letter or _")
        if self.parameters.get("type") != "object":
            raise EvalgymError(f"tool {self.name}: parameters must be a JSON schema of type 'object'")
        check_schema(self.parameters, f"tool {self.name}: parameters")

    def as_openai(self) -> dict[str, Any]:
        """The spec as chat templates and the OpenAI API take it."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": json.loads(json.dumps(self.parameters))}}


def check_schema(schema: Any, where: str) -> None:
    """Refuse schema keywords outside the checked subset (naming where)."""
    if not isinstance(schema, Mapping):
        raise EvalgymError(f"{where}: a schema must be an object, got {type(schema).__name__}")
    unknown = set(schema) - _SCHEMA_KEYS
    if unknown:
        raise EvalgymError(f"{where}: unsupported JSON-schema keyword(s) {sorted(unknown)}; "
                           f"supported: {sorted(_SCHEMA_KEYS)}")
    types = schema.get("type")
    for t in ([types] if isinstance(types, str) else types or []):
        if t not in _TYPES:
            raise EvalgymError(f"{where}: unknown type {t!r}; known: {sorted(_TYPES)}")
    for name, sub in (schema.get("properties") or {}).items():
        check_schema(sub, f"{where}.{name}")
    if isinstance(schema.get("items"), Mapping):
        check_schema(schema["items"], f"{where}[]")


def check_arguments(spec: ToolSpec, arguments: Any) -> str | None:
    """What is wrong with ``arguments`` for ``spec`` (a message for the model), or None."""
    return _check(spec.parameters, arguments, "arguments")


def _check(schema: Mapping[str, Any], value: Any, path: str) -> str | None:
    types = schema.get("type")
    if types is not None:
        allowed = [types] if isinstance(types, str) else list(types)
        ok = any(isinstance(value, _TYPES[t]) and not (t in ("integer", "number") and isinstance(value, bool))
                 for t in allowed)
        if not ok:
            return f"{path} must be of type {' or '.join(allowed)}, got {type(value).__name__}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{path} must be one of {schema['enum']}, got {value!r}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{path} must be >= {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{path} must be <= {schema['maximum']}"
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        missing = [k for k in schema.get("required") or () if k not in value]
        if missing:
            return f"{path}: missing required {', '.join(repr(k) for k in missing)}"
        if schema.get("additionalProperties") is False or (props and "additionalProperties" not in schema):
            extra = sorted(set(value) - set(props))
            if extra:
                return f"{path}: unknown {', '.join(repr(k) for k in extra)}; expected {sorted(props)}"
        for k, v in value.items():
            if k in props and (err := _check(props[k], v, f"{path}.{k}")):
                return err
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, v in enumerate(value):
            if err := _check(schema["items"], v, f"{path}[{i}]"):
                return err
    return None


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True)
class ParsedTurn:
    """What a completion asked for: ``calls`` to run, ``errors`` (calls that could not be read: each is
    replied to as a failed call), and ``content``, the text outside the calls."""

    calls: tuple[ToolCall, ...] = ()
    errors: tuple[str, ...] = ()
    content: str = ""

    @property
    def is_final(self) -> bool:
        """No call was made or attempted: the completion is the final answer."""
        return not self.calls and not self.errors


class ToolCallParser(Protocol):
    name: str

    def parse(self, text: str) -> ParsedTurn: ...


def _call_from(obj: Any, args_key: str) -> ToolCall | str:
    """A ToolCall from a decoded JSON value, or the reason it is not one."""
    if not isinstance(obj, dict):
        return f"a tool call must be a JSON object, got {type(obj).__name__}"
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        return 'a tool call needs a "name" (a string)'
    args = obj.get(args_key, obj.get("arguments", {}))
    if isinstance(args, str):  # some models write the arguments as a JSON string
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as exc:
            return f"tool call {name!r}: arguments are a string that is not JSON ({exc.msg})"
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return f"tool call {name!r}: arguments must be a JSON object, got {type(args).__name__}"
    return ToolCall(name, args)


class HermesParser:
    """``<tool_call>{json}</tool_call>`` blocks (Qwen, Hermes)."""

    name = "hermes"
    open_tag, close_tag = "<tool_call>", "</tool_call>"

    def parse(self, text: str) -> ParsedTurn:
        calls: list[ToolCall] = []
        errors: list[str] = []
        content: list[str] = []
        pos = 0
        while (start := text.find(self.open_tag, pos)) >= 0:
            content.append(text[pos:start])
            end = text.find(self.close_tag, start)
            if end < 0:
                errors.append(f"malformed tool call: {self.open_tag} without {self.close_tag}")
                pos = len(text)
                break
            body = text[start + len(self.open_tag):end].strip()
            pos = end + len(self.close_tag)
            try:
                got = _call_from(json.loads(body), "arguments")
            except json.JSONDecodeError as exc:
                got = f"malformed tool call: not JSON ({exc.msg} at char {exc.pos})"
            (calls.append(got) if isinstance(got, ToolCall) else errors.append(got))
        content.append(text[pos:])
        if not calls and not errors and self.close_tag in text:
            errors.append(f"malformed tool call: {self.close_tag} without {self.open_tag}")
        return ParsedTurn(tuple(calls), tuple(errors), "".join(content).strip())


class Llama3JsonParser:
    """Llama 3.1 style: the completion is ``{"name": ..., "parameters": {...}}`` (``;``-separated for several)."""

    name = "llama3_json"

    def parse(self, text: str) -> ParsedTurn:
        body = text.strip().removeprefix("<|python_tag|>").strip()
        if not body.startswith("{"):
            return ParsedTurn(content=text.strip())
        calls: list[ToolCall] = []
        errors: list[str] = []
        decoder = json.JSONDecoder()
        pos = 0
        while pos < len(body):
            try:
                obj, end = decoder.raw_decode(body, pos)
            except json.JSONDecodeError as exc:
                errors.append(f"malformed tool call: not JSON ({exc.msg} at char {exc.pos})")
                break
            got = _call_from(obj, "parameters")
            (calls.append(got) if isinstance(got, ToolCall) else errors.append(got))
            pos = end
            while pos < len(body) and body[pos] in " \n\t;":
                pos += 1
        return ParsedTurn(tuple(calls), tuple(errors), "")


PARSERS: dict[str, ToolCallParser] = {"hermes": HermesParser(), "llama3_json": Llama3JsonParser()}
# model-name fragment -> parser (first match wins; anything else: hermes)
FAMILIES: list[tuple[str, str]] = [("llama-3", "llama3_json"), ("llama3", "llama3_json")]


def register_parser(parser: ToolCallParser, *families: str) -> None:
    """Add a parser (and the model-name fragments that select it in :func:`parser_for`)."""
    PARSERS[parser.name] = parser
    FAMILIES[:0] = [(f.lower(), parser.name) for f in families]


def get_parser(name: str) -> ToolCallParser:
    if name not in PARSERS:
        raise EvalgymError(f"tool_parser: unknown parser {name!r}; known: {sorted(PARSERS)}")
    return PARSERS[name]


def parser_for(model_name: str) -> ToolCallParser:
    """The parser of a model's family, by name (``hermes`` unless a family fragment matches)."""
    low = (model_name or "").lower()
    return PARSERS[next((p for frag, p in FAMILIES if frag in low), "hermes")]
