"""Token-exact turns: the ids an env appends after a sampled turn, from the chat template, without ever
re-tokenizing what was sampled.

    turns = TurnTokens(tokenizer, tools=env.tool_specs)
    ids = turns.first(messages)                                 # the first prompt (tools rendered)
    ids = ids + list(completion.token_ids) + turns.appended(history, completion, tool_messages)

``appended`` is the template's text from the end of the assistant's content to the next generation prompt
(the turn's end marker, the tool replies, ``<|im_start|>assistant\\n``), tokenized alone. The part of the end
marker the sampler already produced (its end-of-turn token, e.g. ``<|im_end|>``) is not appended again; a
turn cut by ``max_tokens`` gets the whole marker. So a trainer sees exactly the tokens the sampler saw, and
the tool tokens are known to be the env's (masked out of the loss).

The text comes from rendering the history with and without the new messages and taking the difference;
a template that re-renders earlier turns (so the shorter rendering is not a prefix of the longer) falls
back to the same difference on a minimal conversation (user, assistant, the new messages).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from evalgym.errors import EvalgymError
from evalgym.policies.base import encode, render_chat, stop_ids
from evalgym.types import Completion

_MARK = "\x00evalgym-assistant-content\x00"


class TurnTokens:
    def __init__(self, tokenizer: Any, tools: Sequence[Mapping[str, Any]] | None = None):
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise EvalgymError("token-exact episodes need the model's tokenizer with a chat template here")
        self.tok, self.tools = tokenizer, list(tools or ()) or None
        self.eos = stop_ids(tokenizer)
        probe = [{"role": "user", "content": "x"}, {"role": "assistant", "content": _MARK}]
        text = render_chat(tokenizer, probe, tools=self.tools, add_generation_prompt=False)
        if _MARK not in text:
            raise EvalgymError(f"the chat template of {getattr(tokenizer, 'name_or_path', '?')} does not render "
                               "assistant messages as written")
        self.end = text.split(_MARK, 1)[1]  # what the template writes after an assistant's content

    def first(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        return encode(self.tok, list(messages), tools=self.tools)

    def appended_text(self, history: Sequence[Mapping[str, str]], completion: Completion,
                      new: Sequence[Mapping[str, str]]) -> str:
        """The text the env appends after ``completion`` (an assistant turn after ``history``)."""
        turn = [*history, {"role": "assistant", "content": completion.text}]
        shorter = render_chat(self.tok, turn, tools=self.tools, add_generation_prompt=False)
        longer = render_chat(self.tok, [*turn, *new], tools=self.tools, add_generation_prompt=True)
        if not longer.startswith(shorter) or not shorter.endswith(self.end):
            probe = [{"role": "user", "content": "x"}, {"role": "assistant", "content": _MARK}]
            shorter = render_chat(self.tok, probe, tools=self.tools, add_generation_prompt=False)
            longer = render_chat(self.tok, [*probe, *new], tools=self.tools, add_generation_prompt=True)
            if not longer.startswith(shorter):
                raise EvalgymError("the chat template renders a conversation's start differently once tool replies "
                                   "follow: its turns cannot be appended token-exactly")
        end = self.end
        ids = completion.token_ids
        if ids and completion.finish_reason == "stop" and int(ids[-1]) in self.eos:
            said = self.tok.decode([int(ids[-1])], skip_special_tokens=False)
            if end.startswith(said):
                end = end[len(said):]  # the sampler already wrote the end-of-turn token
        return end + longer[len(shorter):]

    def appended(self, history: Sequence[Mapping[str, str]], completion: Completion,
                 new: Sequence[Mapping[str, str]]) -> list[int]:
        text = self.appended_text(history, completion, new)
        return list(self.tok(text, add_special_tokens=False)["input_ids"])
