"""The policy the RL loss trains is the one the rollouts were sampled from: at sampling temperature T the
trainer's log-probs (new, old, reference) are those of logits / T and the engine records each token's log-prob
under the same distribution (``tempered_logprobs``, GRPO's default, as TRL and veRL); distillation keeps the
untempered model's. Before this, every log-prob was at T = 1 whatever the sampling temperature."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from evalgym.errors import EvalgymError
from evalgym.logprobs import CausalLMScorer
from evalgym.policies.base import SamplingParams, encode, make_policy
from evalgym.trainers.distill import DistillConfig
from evalgym.trainers.grpo import GRPOConfig, train_grpo
from evalgym.trainers.rl import policy_temperature, sampling_of
from tests.trainers._verifiers import DigitShare

PROMPTS = [[{"role": "user", "content": "What is 12 + 30?"}], [{"role": "user", "content": "Name a prime."}]]


def scored_at(hf, prompt, comp, temperature):
    """The trainer's scorer on one completion: its tokens' log-probs at ``temperature``."""
    p = encode(hf.tokenizer, prompt)
    ids = torch.tensor([list(p) + list(comp.token_ids)])
    mask = torch.zeros((1, ids.shape[1] - 1))
    mask[0, len(p) - 1:] = 1
    with torch.no_grad():
        out = CausalLMScorer(hf.model)(ids, torch.ones_like(ids), mask, temperature=temperature)
    return out[0, len(p) - 1:].tolist()


def test_scorer_at_temperature_is_log_softmax_of_scaled_logits(tiny_policy):
    model = tiny_policy.model
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, model.config.vocab_size, (3, 12), generator=g)
    mask = torch.ones((3, 11))
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, :-1].float()
        for t in (0.5, 1.0, 1.7):
            want = torch.log_softmax(logits / t, -1).gather(-1, ids[:, 1:, None])[..., 0]
            got = CausalLMScorer(model)(ids, torch.ones_like(ids), mask, temperature=t)
            assert torch.allclose(got, want, atol=1e-5), t
        assert not torch.allclose(CausalLMScorer(model)(ids, torch.ones_like(ids), mask, temperature=0.5),
                                  CausalLMScorer(model)(ids, torch.ones_like(ids), mask))


def test_hf_records_the_sampling_distributions_logprobs(tiny_path):
    hf = make_policy("hf", tiny_path, device="cpu")
    sp = dict(n=3, temperature=0.6, max_tokens=16, seed=5)
    model_lp = hf.generate(PROMPTS, SamplingParams(**sp))
    sampled_lp = hf.generate(PROMPTS, SamplingParams(**sp, logprobs="sampled"))
    for prompt, g_model, g_sampled in zip(PROMPTS, model_lp, sampled_lp):
        for a, b in zip(g_model, g_sampled):
            assert a.token_ids == b.token_ids          # what is drawn does not depend on what is recorded
            assert max(abs(x - y) for x, y in zip(a.logprobs, scored_at(hf, prompt, a, 1.0))) < 1e-4
            assert max(abs(x - y) for x, y in zip(b.logprobs, scored_at(hf, prompt, b, 0.6))) < 1e-4
            assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs)) > 1e-2
    # top-p: the nucleus renormalized, so each token is at least as likely as under logits / T alone
    nucleus = hf.generate(PROMPTS, SamplingParams(**sp, top_p=0.8, logprobs="sampled"))
    gaps = [x - y for prompt, grp in zip(PROMPTS, nucleus) for c in grp
            for x, y in zip(c.logprobs, scored_at(hf, prompt, c, 0.6))]
    assert min(gaps) > -1e-4 and max(gaps) > 1e-3
    with pytest.raises(EvalgymError, match="sampling.logprobs"):
        SamplingParams(logprobs="processed")


def test_rl_config_chooses_the_trained_policy():
    grpo = GRPOConfig(temperature=0.7)
    assert policy_temperature(grpo) == 0.7 and sampling_of(grpo).logprobs == "sampled"
    assert policy_temperature(GRPOConfig(temperature=0.7, tempered_logprobs=False)) == 1.0
    assert policy_temperature(GRPOConfig(temperature=0.0)) == 1.0          # greedy rollouts: the model's own
    distill = DistillConfig(temperature=0.7, teachers={"math": "tiny"})
    assert policy_temperature(distill) == 1.0 and sampling_of(distill).logprobs == "model"


def _run(tmp_path: Path, name: str, **kw) -> tuple[dict[str, torch.Tensor], list[dict]]:
    from safetensors.torch import load_file

    cfg = GRPOConfig(model="tiny", envs={"arithmetic": 1.0}, env_kwargs={"arithmetic": {"verifier": DigitShare()}},
                     steps=1, prompts_per_step=4, group_size=4, max_tokens=12, lr=1e-3,
                     minibatches=2, tis_cap=50.0, seed=3, run_dir=str(tmp_path / name), save_every=1, **kw)
    ckpt = train_grpo(cfg, progress=False)["checkpoint"].path
    rows = [json.loads(x) for x in (Path(cfg.run_dir) / "metrics.jsonl").read_text().splitlines()]
    return load_file(str(Path(ckpt) / "model.safetensors")), rows


def test_grpo_trains_the_tempered_policy(tmp_path):
    """Same samples (same seed and temperature), different trained policy: the update differs with
    ``tempered_logprobs`` on and off at T = 0.5 and is the same at T = 1; either way the sampler's recorded
    log-probs agree with the trainer's: the importance weight is 1 (1.078 when the sampler records the untempered
    log-probs against a tempered trainer)."""
    on, m_on = _run(tmp_path, "on", temperature=0.5)
    off, m_off = _run(tmp_path, "off", temperature=0.5, tempered_logprobs=False)
    assert m_on[0]["reward"] == m_off[0]["reward"] and m_on[0]["tokens"] == m_off[0]["tokens"]
    assert m_on[0]["reward_std"] > 0          # a dense reward (the share of right digits): advantages are not all 0
    diff = max(float((on[k] - off[k]).abs().max()) for k in on)
    assert diff > 1e-6, diff
    for m in (m_on, m_off):
        assert math.isclose(m[0]["behavior_weight"], 1.0, abs_tol=0.005), m[0]["behavior_weight"]
    one_on, _ = _run(tmp_path, "one_on", temperature=1.0)
    one_off, _ = _run(tmp_path, "one_off", temperature=1.0, tempered_logprobs=False)
    assert all(torch.equal(one_on[k], one_off[k]) for k in one_on)


def test_a_stage_written_before_the_field_existed_still_matches(tmp_path):
    """A recipe stage folder (or checkpoint) whose saved config predates ``tempered_logprobs`` reads it as its
    default: an older run resumes or is skipped as done; a real difference is still refused."""
    import yaml

    from evalgym.recipes.runner import stage_state
    from evalgym.recipes.spec import load_recipe, plan
    from evalgym.trainers.config import with_new_defaults

    cfg = GRPOConfig(temperature=0.7).model_dump(mode="json")
    old = {k: v for k, v in cfg.items() if k != "tempered_logprobs"}
    assert with_new_defaults(GRPOConfig, old) == cfg
    stage = next(s for s in plan(load_recipe("mopd-2026", ["model=tiny"]), tmp_path)
                 if "tempered_logprobs" in type(s.config).model_fields)   # the distillation student
    stage.run_dir.mkdir(parents=True)
    saved = stage.config.model_dump(mode="json")
    saved.pop("tempered_logprobs")
    (stage.run_dir / "stage.yaml").write_text(yaml.safe_dump(saved))
    assert stage_state(stage) == "new"
    saved["lr"] = 1.0
    (stage.run_dir / "stage.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(EvalgymError, match="another config"):
        stage_state(stage)
