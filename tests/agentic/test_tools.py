"""Tool specs, argument checks, tool-call parsers, and tools in the chat template (native and the Hermes
fallback): the same prompt gives the same token ids through ``encode`` whatever the backend."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from evalgym.agentic.tools import (
    HermesParser,
    Llama3JsonParser,
    ToolSpec,
    check_arguments,
    get_parser,
    parser_for,
)
from evalgym.errors import EvalgymError
from evalgym.policies import tool_template
from evalgym.policies.base import encode, render_chat

PY = ToolSpec("python", "Run Python code.", {"type": "object", "properties": {"code": {"type": "string"}},
                                             "required": ["code"]})
SUB = ToolSpec("submit", "Submit.", {"type": "object", "properties": {
    "answer": {"type": "string"}, "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    "tags": {"type": "array", "items": {"type": "string"}}, "mode": {"enum": ["a", "b"]}}, "required": ["answer"]})

# A Qwen2.5-like template that renders `tools` itself and a `tool` role (a trimmed copy of its structure).
NATIVE = (
    "{%- if tools %}<|im_start|>system\n{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}"
    "{% else %}You are helpful.{% endif %}\n\n# Tools\n<tools>{% for tool in tools %}\n{{ tool | tojson }}"
    "{% endfor %}\n</tools><|im_end|>\n{%- elif messages[0]['role'] == 'system' %}<|im_start|>system\n"
    "{{ messages[0]['content'] }}<|im_end|>\n{%- endif %}"
    "{%- for message in messages %}{%- if message['role'] == 'tool' %}<|im_start|>user\n<tool_response>\n"
    "{{ message['content'] }}\n</tool_response><|im_end|>\n{%- elif not (message['role'] == 'system' and loop.first) %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}")
CHOKES = NATIVE.replace("{%- if tools %}", "{%- if tools %}{% for t in tools %}{% if 'array' in (t | tojson) %}"
                        "{{ raise_exception('this template cannot render array parameters') }}{% endif %}{% endfor %}")


@pytest.fixture(scope="module")
def tok(tiny_path):
    return AutoTokenizer.from_pretrained(tiny_path)


def _with_template(tiny_path, template):
    t = AutoTokenizer.from_pretrained(tiny_path)
    t.chat_template = template
    return t


# -- specs and arguments --------------------------------------------------------------------------

def test_specs_are_checked_when_made():
    with pytest.raises(EvalgymError, match="letters, digits"):
        ToolSpec("bad name", "x")
    with pytest.raises(EvalgymError, match="type 'object'"):
        ToolSpec("t", "x", {"type": "string"})
    with pytest.raises(EvalgymError, match=r"unsupported JSON-schema keyword\(s\) \['pattern'\]"):
        ToolSpec("t", "x", {"type": "object", "properties": {"s": {"type": "string", "pattern": "a+"}}})
    assert PY.as_openai() == {"type": "function", "function": {"name": "python", "description": "Run Python code.",
                                                               "parameters": dict(PY.parameters)}}


@pytest.mark.parametrize("args, error", [
    ({"answer": "4"}, None),
    ({"answer": "4", "confidence": 0.5, "tags": ["x"], "mode": "a"}, None),
    ({}, "missing required 'answer'"),
    ({"answer": 4}, "arguments.answer must be of type string, got int"),
    ({"answer": "4", "confidence": 2}, "arguments.confidence must be <= 1"),
    ({"answer": "4", "confidence": True}, "must be of type number, got bool"),
    ({"answer": "4", "tags": ["x", 3]}, "arguments.tags[1] must be of type string"),
    ({"answer": "4", "mode": "c"}, "must be one of ['a', 'b']"),
    ({"answer": "4", "extra": 1}, "unknown 'extra'"),
    ([1], "arguments must be of type object, got list"),
])
def test_arguments_are_checked_against_the_schema(args, error):
    got = check_arguments(SUB, args)
    assert (got is None) if error is None else (error in got), got


# -- parsers ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, calls, errors, final", [
    ("The answer is 4.", [], 0, True),
    ('Let me run it.\n<tool_call>\n{"name": "python", "arguments": {"code": "print(1)"}}\n</tool_call>',
     [("python", {"code": "print(1)"})], 0, False),
    ('<tool_call>{"name": "a", "arguments": {}}</tool_call><tool_call>{"name": "b", "arguments": "{\\"x\\": 1}"}'
     '</tool_call>', [("a", {}), ("b", {"x": 1})], 0, False),
    ('<tool_call>{"name": "python", "arguments": {"code": "x"}', [], 1, False),          # unclosed
    ('<tool_call>{"name": python}</tool_call>', [], 1, False),                           # not JSON
    ('<tool_call>{"arguments": {}}</tool_call>', [], 1, False),                          # no name
    ('<tool_call>{"name": "p", "arguments": [1]}</tool_call>', [], 1, False),            # args not an object
    ('<tool_call>["python"]</tool_call>', [], 1, False),
    ('stray </tool_call>', [], 1, False),
    ('<tool_call>{"name": "ok", "arguments": {}}</tool_call> <tool_call>nope</tool_call>', [("ok", {})], 1, False),
])
def test_hermes_parser(text, calls, errors, final):
    p = HermesParser().parse(text)
    assert [(c.name, dict(c.arguments)) for c in p.calls] == calls
    assert len(p.errors) == errors and p.is_final == final, p.errors


def test_llama3_parser_and_family_choice():
    p = Llama3JsonParser().parse('<|python_tag|>{"name": "python", "parameters": {"code": "1"}}; '
                                 '{"name": "submit", "parameters": {"answer": "1"}}')
    assert [(c.name, dict(c.arguments)) for c in p.calls] == [("python", {"code": "1"}), ("submit", {"answer": "1"})]
    assert Llama3JsonParser().parse("just text").is_final
    assert len(Llama3JsonParser().parse('{"name": "x", "parameters": ').errors) == 1
    assert parser_for("meta-llama/Llama-3.1-8B-Instruct").name == "llama3_json"
    assert parser_for("Qwen/Qwen2.5-7B-Instruct").name == "hermes" and parser_for("tiny").name == "hermes"
    with pytest.raises(EvalgymError, match="unknown parser 'nope'"):
        get_parser("nope")


# -- tools in the chat template -------------------------------------------------------------------------

MSGS = [{"role": "user", "content": "What is 6*7?"}, {"role": "assistant", "content": "<tool_call>x</tool_call>"},
        {"role": "tool", "content": "42"}, {"role": "tool", "content": "ok"}]


def test_fallback_for_templates_without_tools(tok):
    assert not tool_template.renders_tools(tok)  # the tiny model's ChatML template renders messages only
    text = render_chat(tok, MSGS, tools=[PY.as_openai()])
    assert text.startswith("<|im_start|>system\n# Tools\n") and json.dumps(PY.as_openai()) in text
    assert "<|im_start|>user\n<tool_response>\n42\n</tool_response>\n<tool_response>\nok\n</tool_response><|im_end|>" in text
    assert "<|im_start|>tool" not in text and text.endswith("<|im_start|>assistant\n")
    # a system message of the env keeps its place; the block goes after it
    text = render_chat(tok, [{"role": "system", "content": "Be brief."}, MSGS[0]], tools=[PY.as_openai()])
    assert text.startswith("<|im_start|>system\nBe brief.\n\n# Tools\n") and text.count("<|im_start|>system") == 1
    # without tools, the prompt is exactly what it was before tools existed
    assert render_chat(tok, MSGS[:1]) == tok.apply_chat_template(MSGS[:1], add_generation_prompt=True, tokenize=False)


def test_native_tools_template_gets_the_specs_itself(tiny_path):
    tok = _with_template(tiny_path, NATIVE)
    assert tool_template.renders_tools(tok)
    text = render_chat(tok, MSGS, tools=[PY.as_openai()])
    assert "You are helpful." in text and '"name": "python"' in text and "You may call one or more" not in text
    assert "<tool_response>\n42\n</tool_response>" in text


def test_a_template_that_cannot_render_a_schema_is_an_error_naming_the_tools(tiny_path):
    tok = _with_template(tiny_path, CHOKES)
    assert render_chat(tok, MSGS[:1], tools=[PY.as_openai()])  # this one it can
    with pytest.raises(EvalgymError, match=r"cannot render the tools \['python', 'submit'\].*array parameters"):
        render_chat(tok, MSGS[:1], tools=[PY.as_openai(), SUB.as_openai()])


def test_same_token_ids_for_every_backend(tiny_path, tok):
    """Every backend calls ``encode``: the same messages and tools give the same ids, equal to the template's
    text tokenized once (and the hf, vllm and openai policies all import this one function)."""
    import evalgym.policies.hf as hf
    import evalgym.policies.openai as oa
    import evalgym.policies.vllm as vl

    assert hf.encode is encode and oa.encode is encode and vl.encode is encode
    ids = encode(tok, MSGS, tools=[PY.as_openai()])
    assert ids == tok(render_chat(tok, MSGS, tools=[PY.as_openai()]), add_special_tokens=False)["input_ids"]
    assert ids == encode(AutoTokenizer.from_pretrained(tiny_path), MSGS, tools=[PY.as_openai()])
    assert encode(tok, ids) == ids
