"""Tools in the chat template: how an env's tool specs and tool replies become prompt text.

Used by ``evalgym.policies.base.render_chat`` (the one rendering every backend shares). A model whose chat
template renders ``tools`` (Qwen2.5/3, Hermes, Llama 3.1...) gets them through its template's own ``tools=``
argument, and tool replies as ``{"role": "tool"}`` messages, exactly as its authors trained it.

A template that ignores ``tools`` (the tiny model's and SmolLM2's ChatML templates do: they render
``messages`` only) gets the Hermes convention written by us, the text Qwen2.5's template writes:
- the tool specs as a ``# Tools`` block at the end of the system message (a system message holding only the
  block is put first when there is none; a template's default system prompt, such as SmolLM2's, is then
  not rendered, as Qwen's template also drops its default when tools come);
- each run of tool replies as one ``user`` turn of ``<tool_response>…</tool_response>`` blocks.
Whether a template renders ``tools`` is probed once per template (a spec with a marker name must appear
in the output). A template that raises on the specs is an error naming the tools, never a silent fallback.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from evalgym.errors import EvalgymError

_PROBE_NAME = "evalgym_probe_tool_7f3a"
_FEATURES: dict[str, bool] = {}


def _probe_spec() -> dict[str, Any]:
    return {"type": "function", "function": {"name": _PROBE_NAME, "description": "probe",
                                             "parameters": {"type": "object", "properties": {}}}}


def renders_tools(tokenizer: Any) -> bool:
    """Whether this tokenizer's chat template renders the ``tools`` argument (cached per template text)."""
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else repr(tokenizer.chat_template)
    if template not in _FEATURES:
        try:
            text = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tools=[_probe_spec()],
                                                 add_generation_prompt=True, tokenize=False)
            _FEATURES[template] = _PROBE_NAME in text
        except Exception:  # noqa: BLE001  (a template that cannot take tools at all: ours renders them)
            _FEATURES[template] = False
    return _FEATURES[template]


def tools_block(tools: Sequence[Mapping[str, Any]]) -> str:
    """The Hermes tool instructions with the specs (as Qwen2.5's template writes them)."""
    specs = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    return ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
            f"{specs}\n</tools>\n\nFor each function call, return a json object with function name and arguments "
            "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
            '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>')


def hermes_messages(messages: Sequence[Mapping[str, str]], tools: Sequence[Mapping[str, Any]] | None) -> list[dict[str, str]]:
    """``messages`` with the tool specs in the system message and tool replies as ``user`` turns."""
    out: list[dict[str, str]] = []
    for m in messages:
        if m["role"] == "tool":
            block = f"<tool_response>\n{m['content']}\n</tool_response>"
            if out and out[-1].get("_tool"):
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "_tool": "1"})
        else:
            out.append({"role": m["role"], "content": m["content"]})
    for m in out:
        m.pop("_tool", None)
    if tools:
        if out and out[0]["role"] == "system":
            out[0]["content"] = f"{out[0]['content']}\n\n{tools_block(tools)}"
        else:
            out.insert(0, {"role": "system", "content": tools_block(tools)})
    return out


def render(tokenizer: Any, messages: list[dict[str, str]], tools: Sequence[Mapping[str, Any]] | None,
           add_generation_prompt: bool) -> str:
    """The prompt text of ``messages`` (and ``tools``) through the tokenizer's chat template."""
    has_tool_msgs = any(m["role"] == "tool" for m in messages)
    if not tools and not has_tool_msgs:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)
    names = [str((t.get("function") or {}).get("name", "?")) for t in tools or ()]
    native = renders_tools(tokenizer)
    try:
        if native:
            return tokenizer.apply_chat_template(messages, tools=list(tools or ()) or None,
                                                 add_generation_prompt=add_generation_prompt, tokenize=False)
        return tokenizer.apply_chat_template(hermes_messages(messages, tools),
                                             add_generation_prompt=add_generation_prompt, tokenize=False)
    except Exception as exc:  # noqa: BLE001  (jinja errors: a schema or a role the template cannot take)
        model = getattr(tokenizer, "name_or_path", "?")
        raise EvalgymError(f"the chat template of {model} cannot render the tools {names} "
                           f"({'its own tools rendering' if native else 'the Hermes fallback'}): "
                           f"{type(exc).__name__}: {exc}") from None
