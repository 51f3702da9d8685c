"""Training on agentic episodes: every assistant turn is in the loss, tool tokens are not, the behaviour
log-probs are each turn's own; a GRPO step and an on-policy distillation step run end to end on
``python-math`` (real sampling with the tiny model, real sandbox sessions, the real trainers and checkpoints).

The episodes of the end-to-end steps are steered by a scripted tool-call parser (the tiny model writes
noise): the first four turns of the step call ``python``, every later turn submits, alternately the gold
answer and a wrong one — so a group of four episodes always has rewards 1, 1, 0, 0 (GRPO has something to
learn) and most episodes are multi-turn, whatever the sampled text is."""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from evalgym.agentic.runner import run_episodes
from evalgym.agentic.tools import ParsedTurn, ToolCall, register_parser
from evalgym.policies.base import SamplingParams
from evalgym.rollouts import Rollout, RolloutStats, make_env
from evalgym.trainers.batch import episode_tokens, train_batch
from evalgym.trainers.grpo import GRPO, GRPOConfig, grpo_rows, train_grpo
from evalgym.trainers.rl import pick_problems
from evalgym.types import TrajectoryGroup, content_hash
from tests.agentic.test_runner import EveryTurnRunsPython  # noqa: F401  (registers the parser)

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("bwrap"),
                                reason="sandbox sessions need root and bubblewrap here")


def test_every_assistant_turn_is_trained_and_no_tool_token(tiny_policy):
    env = make_env("python-math", dataset="arithmetic", split="train", parser="test-every-turn-python", max_turns=3)
    groups, _ = run_episodes(tiny_policy, [(env, 0), (env, 1)], n=2, sampling=SamplingParams(max_tokens=10), seed=2)
    rollout = Rollout([TrajectoryGroup(g[0].problem, tuple(g)) for g in groups], RolloutStats())
    rows, _stats = grpo_rows(GRPOConfig(group_size=2, max_tokens=10), rollout, [[True, True], [True, True]])
    batch = train_batch(rows, tiny_policy.tokenizer.pad_token_id)
    for b, t in enumerate(t for g in groups for t in g):
        ep = episode_tokens(t)
        assert len(t.steps) == 3 and ep.num_sampled == sum(len(s.completion.token_ids) for s in t.steps)
        mask = batch.loss_mask_BT[b]
        for s in t.steps:  # each turn's sampled tokens are trained on, with its own behaviour log-probs
            c = s.completion
            p, n = len(c.prompt_token_ids), len(c.token_ids)
            assert batch.tokens_BL[b, p:p + n].tolist() == list(c.token_ids)
            assert mask[p - 1:p - 1 + n].all()
            assert batch.behavior_logp_BT[b, p - 1:p - 1 + n].tolist() == pytest.approx(list(c.logprobs), abs=1e-6)
        for prev, nxt in zip(t.steps, t.steps[1:]):  # the env's tokens between turns are not
            start = len(prev.completion.prompt_token_ids) + len(prev.completion.token_ids)
            end = len(nxt.completion.prompt_token_ids)
            assert end > start and mask[start - 1:end - 1].sum() == 0
        assert mask.sum() == ep.num_sampled


# -- end to end ---------------------------------------------------------------------------------------------


class ScriptedAgent:
    """The first ``python_turns`` turns parsed (over all episodes of the step) call ``python``; every later
    turn submits, alternately ``gold`` and a wrong answer. Each episode ends at its first submit, so with
    ``python_turns`` = group size the group always gets half right."""

    def __init__(self, name: str, gold: str, python_turns: int):
        self.name, self.gold, self.python_turns = name, gold, python_turns
        self.lock = threading.Lock()
        self.calls = 0

    def parse(self, text: str) -> ParsedTurn:
        with self.lock:
            k, self.calls = self.calls, self.calls + 1
        if k < self.python_turns:
            return ParsedTurn(calls=(ToolCall("python", {"code": f"print('turn', {len(text)})"}),))
        answer = self.gold if (k - self.python_turns) % 2 == 0 else "-987654"
        return ParsedTurn(calls=(ToolCall("submit", {"answer": answer}),))


ENV_KW = {"dataset": "arithmetic", "max_turns": 6, "max_tokens": 1900}


def _problem_of_step0(cfg):
    kw = {k: v for k, v in cfg.env_kwargs["python-math"].items() if k != "parser"}  # not registered yet
    env = make_env("python-math", **kw)
    [(_name, index)] = pick_problems(cfg, {"python-math": env.source.size}, 0)
    return env.source.problem(index)


def _spy_rows(monkeypatch, cls):
    """Record what the algorithm's ``rows`` got and made (the real method runs)."""
    seen = []
    real = cls.rows

    def rows(self, trainer, rollout, valid):
        out = real(self, trainer, rollout, valid)
        seen.append((rollout, out[0]))
        return out

    monkeypatch.setattr(cls, "rows", rows)
    return seen


def _changed(start: Path, ckpt: Path) -> list[str]:
    a, b = load_file(str(start / "model.safetensors")), load_file(str(ckpt / "model.safetensors"))
    assert a.keys() == b.keys()
    return [k for k in a if not torch.equal(a[k], b[k])]


def _check_checkpoint(run: Path, start: str, problem) -> dict:
    """Step 1's metrics row, checkpoint manifest and weights; returns the metrics row."""
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1]
    ckpt = run / "step_000001"
    trained = json.loads((ckpt / "trained_problems.json").read_text())
    assert trained["count"] == 1 and trained["hashes"] == [content_hash(problem)]
    assert trained["by_env"] == {problem.env_id: 1} and problem.env_id == "evalgym/python-math-v0"
    assert json.loads((ckpt / "meta.json").read_text())["envs"] == {"python-math": "evalgym/python-math-v0"}
    assert _changed(Path(start), ckpt), "one training step changed no weight"
    return rows[0]


def test_a_grpo_step_on_an_agentic_env(tmp_path, tiny_path, monkeypatch):
    parser = f"test-scripted-agent-{tmp_path.name}"
    kw = {**ENV_KW, "parser": parser}
    cfg = GRPOConfig(model=tiny_path, steps=1, prompts_per_step=1, group_size=4, max_tokens=8, lr=1e-3,
                     run_dir=str(tmp_path / "run"), save_every=1, envs={"python-math": 1.0},
                     env_kwargs={"python-math": kw})
    problem = _problem_of_step0(cfg)
    register_parser(ScriptedAgent(parser, problem.answer, python_turns=4))
    seen = _spy_rows(monkeypatch, GRPO)
    train_grpo(cfg, progress=False)

    [(rollout, rows)] = seen
    [group] = rollout.groups
    trajs = group.trajectories
    assert group.problem.id == problem.id and len(trajs) == 4
    # the episodes: 4 python calls and 4 submits over the group, run for real; half graded right
    assert sum(t.metrics["tool_calls"] for t in trajs) == 8 and sum(t.metrics["tool_errors"] for t in trajs) == 0
    assert sum(t.metrics["turns"] for t in trajs) == 8 and all(t.metrics["submitted"] == 1 for t in trajs)
    assert sorted(t.reward for t in trajs) == [0.0, 0.0, 1.0, 1.0]
    multi = [t for t in trajs if len(t.steps) > 1]
    assert multi, "no multi-turn episode"
    for t in multi:   # the python tool really ran: its output is what the next turn saw
        assert any(m.role == "tool" and m.content.startswith("turn ") for m in t.steps[1].messages)
    # every assistant turn of every episode is trained on, with the group's advantage
    assert [r.episode.num_sampled for r in rows] == [sum(len(s.completion.token_ids) for s in t.steps) for t in trajs]
    assert sorted(r.advantage > 0 for r in rows) == [False, False, True, True]
    m = _check_checkpoint(tmp_path / "run", tiny_path, problem)
    assert m["tokens"] == sum(r.episode.num_sampled for r in rows) > 8 * 4 * 0.5
    assert m["reward"] == 0.5 and m["reward_std"] > 0 and m["updates"] == 1
    # the episodes' own metrics reach metrics.jsonl (averaged over the group's episodes)
    assert m["episode_tool_calls"] == 2 and m["episode_turns"] == 2 and m["episode_tool_errors"] == 0


def test_an_on_policy_distillation_step_on_an_agentic_env(tmp_path, tiny_path, monkeypatch):
    """The teacher (another tiny model) scores the student's whole episode: its log-probs at every sampled
    token of every turn are the teacher's own on that one token sequence (tool replies included as context)."""
    from transformers import AutoModelForCausalLM

    from evalgym.models import TinyConfig, init_tiny
    from evalgym.trainers.distill import Distill, DistillConfig, train_distill

    teacher = str(init_tiny(tmp_path / "teacher", TinyConfig(seed=1)))
    parser = f"test-scripted-agent-d-{tmp_path.name}"
    cfg = DistillConfig(model=tiny_path, teachers={"python-math": teacher}, steps=1, prompts_per_step=1, group_size=2,
                        max_tokens=8, probe_prompts=0, run_dir=str(tmp_path / "run"), save_every=1,
                        envs={"python-math": 1.0}, env_kwargs={"python-math": {**ENV_KW, "parser": parser}})
    problem = _problem_of_step0(cfg)
    register_parser(ScriptedAgent(parser, problem.answer, python_turns=2))
    seen = _spy_rows(monkeypatch, Distill)
    train_distill(cfg, progress=False)

    [(rollout, rows)] = seen
    trajs = rollout.groups[0].trajectories
    assert sum(t.metrics["tool_calls"] for t in trajs) == 4 and sum(len(t.steps) for t in trajs) == 4
    model = AutoModelForCausalLM.from_pretrained(teacher).eval()
    turns_scored = 0
    for r, t in zip(rows, trajs):
        ep = r.episode
        assert r.train and ep.num_sampled == sum(len(s.completion.token_ids) for s in t.steps)
        with torch.no_grad():
            logits = model(torch.tensor([ep.ids])).logits[0].float()
        own = torch.log_softmax(logits[:-1], -1).gather(1, torch.tensor(ep.ids[1:])[:, None])[:, 0]
        sampled = [i for i, s in enumerate(ep.sampled) if s]
        assert [r.teacher_logp[i] for i in sampled] == pytest.approx([float(own[i - 1]) for i in sampled], abs=1e-4)
        turns_scored += len(t.steps)
    assert turns_scored == 4 and max(len(t.steps) for t in trajs) >= 2
    m = _check_checkpoint(tmp_path / "run", tiny_path, problem)
    assert m["tokens"] == sum(r.episode.num_sampled for r in rows)
    assert math.isfinite(m["teacher_kl"]) and abs(m["teacher_kl"]) > 1e-3   # another model: the KL is not 0
