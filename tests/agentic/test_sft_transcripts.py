"""SFT on tool-use demonstrations: an agentic env in the SFT trainer's ``envs`` gives each problem's reference
episode, played for real in its sandbox session, as the chat row, with the env's tools; the trainer's tokens
for that row are exactly the tokens a rollout of the same turns produces (what GRPO and distillation then
train on), with the loss on the assistant turns only (the ``mopd-agentic`` recipe's first stage)."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from evalgym.agentic.demos import TranscriptPolicy, reference_turns
from evalgym.agentic.runner import run_episodes
from evalgym.policies.base import SamplingParams
from evalgym.rollouts import make_env
from evalgym.trainers.batch import episode_tokens, is_token_exact
from evalgym.trainers.sft import SFTConfig, load_rows, tokenize_chat

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("bwrap"),
                                reason="sandbox sessions need root and bubblewrap here")

KNOBS = {"python-math": {"dataset": "arithmetic", "digits": 2, "ops": "+"}, "code-tools": {"dataset": "code-gen"}}


def test_agentic_env_rows_are_played_reference_episodes_token_exact_with_rollouts(tiny_policy, tmp_path):
    tok = tiny_policy.tokenizer
    cfg = SFTConfig(model="tiny", run_dir=str(tmp_path), envs=list(KNOBS), env_kwargs=KNOBS, env_rows=3)
    rows, problems, tools = load_rows(cfg)
    assert len(rows) == 6 and [p.env_id for p in problems] == ["evalgym/python-math-v0"] * 3 + ["evalgym/code-tools-v0"] * 3
    for row, p, specs in zip(rows, problems, tools):
        env = make_env(p.env_id, **KNOBS[p.env_id.split("/")[1].rsplit("-v", 1)[0]])
        assert specs == env.tool_specs
        said = [m["content"] for m in row if m["role"] == "assistant"]
        replies = [m["content"] for m in row if m["role"] == "tool"]
        assert said == reference_turns(p) and row[-1]["role"] == "assistant"   # no reply to the submit
        # the replies came from the sandbox: the interpreter's repr of the answer, the tests' own output
        assert replies == ([repr(p.answer) + "\n"] if "python-math" in p.env_id else ["tests pass\n"]), replies
        ids, mask = tokenize_chat(tok, row, 4096, specs)
        # the rollout of the same turns (sampled by the transcript policy, the env's tokens appended by the runner)
        policy = TranscriptPolicy(tok, problems=[p])
        index = next(i for i in range(10) if env.source.problem(i).id == p.id)
        (ts,), _ = run_episodes(policy, [(env, index)], sampling=SamplingParams(max_tokens=1500))
        ep = episode_tokens(ts[0])
        assert ts[0].reward == 1.0 and is_token_exact(ts[0])
        assert list(ep.ids) == ids[:len(ep.ids)]
        # the loss is on the sampled turns (SFT also learns the newline its template writes after end-of-turn)
        newline = [i for i in range(len(ids)) if mask[i] and not (i < len(ep.ids) and ep.sampled[i])]
        assert all(tok.decode([ids[i]]) == "\n" and i > 0 and ids[i - 1] == tok.eos_token_id for i in newline)
        assert all(mask[i] for i in range(len(ep.ids)) if ep.sampled[i])
        env.close()


def test_data_rows_carry_tools_as_env_rows_do(tiny_policy, tmp_path):
    """A JSONL row with ``tools`` (OpenAI's fine-tuning format) renders like the env's own row."""
    cfg = SFTConfig(model="tiny", run_dir=str(tmp_path), envs=["python-math"], env_kwargs=KNOBS, env_rows=1)
    (row,), _, (specs,) = load_rows(cfg)
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"messages": row, "tools": specs}) + "\n" + json.dumps({"messages": row}) + "\n")
    rows, _, tools = load_rows(SFTConfig(model="tiny", run_dir=str(tmp_path), data=str(data)))
    tok = tiny_policy.tokenizer
    with_tools, without = (tokenize_chat(tok, r, 4096, t) for r, t in zip(rows, tools))
    assert with_tools == tokenize_chat(tok, row, 4096, specs)
    assert "<tools>" in tok.decode(with_tools[0]) and "<tools>" not in tok.decode(without[0])
    assert sum(with_tools[1]) == sum(without[1]) > 0     # the same assistant turns are learnt either way
