"""The one RL loop: 1 × 1 is the on-policy step bit for bit; several updates per batch make the clip range
bind; the KL reference is the start model after resumes; grader errors are masked, counted and stop a
run; precision; configs checked before any model loads."""

from __future__ import annotations

import json

import pytest
import torch

from evalgym.envs.registry import resolve_id
from evalgym.errors import EvalgymError
from evalgym.trainers.config import load_config
from evalgym.trainers.grpo import GRPOConfig, grpo_rows, train_grpo
from tests.trainers._verifiers import DigitShare, FailingGrades

ARITH = resolve_id("arithmetic").split("/")[-1]   # metric keys name the env and its version


def _metrics(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _grpo(tiny_path, run_dir, **kw):
    base = dict(model=tiny_path, envs={"arithmetic": 1.0}, env_kwargs={"arithmetic": {"verifier": DigitShare()}},
                steps=2, prompts_per_step=4, group_size=4, max_tokens=12, lr=1e-3, save_every=100, seed=3,
                run_dir=str(run_dir))
    return GRPOConfig(**{**base, **kw})


def test_one_update_per_batch_is_the_on_policy_step_bit_for_bit(tmp_path, tiny_path):
    """minibatches 1, epochs 1: the loop's weights after two steps equal a hand-rolled on-policy GRPO step
    (sample, group advantages, −A·∇log π with the ratio at 1, clip-norm, AdamW) to the last bit."""
    from transformers import AutoModelForCausalLM

    from evalgym.logprobs import CausalLMScorer
    from evalgym.policies.hf import HFPolicy
    from evalgym.rollouts import collect_many, make_env
    from evalgym.trainers.batch import train_batch
    from evalgym.trainers.losses import policy_loss
    from evalgym.trainers.rl import pick_problems, sampling_of

    cfg = _grpo(tiny_path, tmp_path / "loop")
    result = train_grpo(cfg, progress=False)

    model = AutoModelForCausalLM.from_pretrained(tiny_path).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    env = make_env("arithmetic", verifier=DigitShare())
    scorer = CausalLMScorer(model)
    for step in range(cfg.steps):
        items = [(env, i) for _, i in pick_problems(cfg, {"arithmetic": env.source.size}, step)]
        model.eval()
        rollout = collect_many(HFPolicy.from_model(model, result["tokenizer"]), items, n=cfg.group_size,
                               sampling=sampling_of(cfg), seed=cfg.seed * 1_000_003 + step)
        model.train()
        rows, _ = grpo_rows(cfg, rollout, [[True] * cfg.group_size for _ in items])
        b = train_batch(rows, result["tokenizer"].pad_token_id)
        new = scorer(b.tokens_BL, b.attention_BL, b.loss_mask_BT, share_prompts=True)
        loss, m = policy_loss(new, new.detach(), b.advantages_BT, b.loss_mask_BT, aggregation="token")
        assert m["clip_fraction"] == 0.0 and m["ratio_mean"] == 1.0
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        opt.step()
        opt.zero_grad()
    trained = result["model"].state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(v, trained[k]), k
    assert all(r["clip_fraction"] == 0.0 and r["ratio_mean"] == 1.0 for r in _metrics(tmp_path / "loop"))


@pytest.mark.parametrize("variant", [{}, {"ratio_level": "sequence", "clip_low": 0.0003, "clip_high": 0.0004}])
def test_several_updates_per_batch_make_the_clip_range_bind(tmp_path, tiny_path, variant):
    """4 minibatches × 2 epochs: later updates see ratios away from 1, and clipping acts (token-level GRPO,
    and GSPO's sequence ratio with its published tiny range); DAPO's clip-higher clips fewer tokens."""
    common = dict(steps=3, prompts_per_step=8, lr=3e-3, minibatches=4, epochs=2, **variant)
    train_grpo(_grpo(tiny_path, tmp_path / "multi", **common), progress=False)
    rows = _metrics(tmp_path / "multi")
    assert all(r["updates"] == 8 for r in rows)
    assert max(r["clip_fraction"] for r in rows) > 0, rows
    assert any(abs(r["ratio_mean"] - 1) > 1e-4 for r in rows)
    if not variant:
        train_grpo(_grpo(tiny_path, tmp_path / "higher", clip_high=0.6, **common), progress=False)
        higher = _metrics(tmp_path / "higher")
        assert sum(r["clip_fraction"] for r in higher) < sum(r["clip_fraction"] for r in rows)


def test_the_kl_reference_is_the_start_model_after_a_resume(tmp_path, tiny_path):
    """A run resumed from its step-2 checkpoint takes the same KL (to the start model, not to the resumed
    checkpoint) and ends on the same weights as the run that went straight through."""
    from safetensors.torch import load_file

    kw = dict(steps=4, save_every=2, beta=0.5)
    train_grpo(_grpo(tiny_path, tmp_path / "straight", **kw), progress=False)
    train_grpo(_grpo(tiny_path, tmp_path / "resumed", **{**kw, "steps": 2}), progress=False)
    train_grpo(_grpo(tiny_path, tmp_path / "resumed", **kw), progress=False)   # as after a kill at step 2
    a, b = _metrics(tmp_path / "straight"), _metrics(tmp_path / "resumed")
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    assert [r["kl"] for r in a] == [r["kl"] for r in b] and a[-1]["kl"] > 0
    wa = load_file(str(tmp_path / "straight" / "step_000004" / "model.safetensors"))
    wb = load_file(str(tmp_path / "resumed" / "step_000004" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_grader_errors_are_masked_counted_and_stop_the_run(tmp_path, tiny_path):
    # some grades fail (even problem indices): those samples are out of the loss and counted, the run goes on
    train_grpo(_grpo(tiny_path, tmp_path / "half", prompts_per_step=8, env_kwargs={"arithmetic": {
        "verifier": FailingGrades(2)}}, grader_error_max=1.0), progress=False)
    rows = _metrics(tmp_path / "half")
    assert all(0 < r[f"grader_error_frac/{ARITH}"] < 1 and r["tokens"] > 0 for r in rows), rows
    with pytest.raises(EvalgymError, match=rf"grader errors on {ARITH}.*3 steps.*no sandbox: bubblewrap not found"):
        train_grpo(_grpo(tiny_path, tmp_path / "all", steps=10, grader_error_window=3,
                         env_kwargs={"arithmetic": {"verifier": FailingGrades()}}), progress=False)
    rows = _metrics(tmp_path / "all")
    assert len(rows) == 3 and all(r[f"grader_error_frac/{ARITH}"] == 1.0 and r["tokens"] == 0 for r in rows)


def test_a_failed_grade_is_out_of_the_loss_and_out_of_the_baseline(tiny_policy):
    from evalgym.rollouts import collect_many, make_env

    env = make_env("arithmetic", verifier=DigitShare())
    rollout = collect_many(tiny_policy, [(env, 0), (env, 1)], n=4, sampling=__import__(
        "evalgym.policies.base", fromlist=["SamplingParams"]).SamplingParams(max_tokens=8), seed=0)
    valid = [[True, False, True, True], [True, True, True, True]]
    rows, stats = grpo_rows(GRPOConfig(group_size=4), rollout, valid)
    assert [r.train for r in rows] == [True, False, True, True, True, True, True, True]
    r0 = torch.tensor([rollout.groups[0].trajectories[i].reward for i in (0, 2, 3)])
    expected = (r0 - r0.mean()) / (r0.std(unbiased=False) + 1e-6)
    assert torch.allclose(torch.tensor([rows[i].advantage for i in (0, 2, 3)]), expected, atol=1e-6)


def test_bf16_autocast_keeps_fp32_weights_that_move_at_lr_1e6(tmp_path, tiny_path):
    """On CPU as on a GPU: mixed precision (bf16 compute, fp32 parameters and AdamW state) makes the
    fp32 run's update; pure bf16 weights lose it (and warn)."""
    from safetensors.torch import load_file

    from evalgym.trainers.sft import SFTConfig, train_sft

    start = load_file(str(__import__("pathlib").Path(tiny_path) / "model.safetensors"))

    def delta(**kw):
        run = tmp_path / "_".join(f"{k}{v}" for k, v in kw.items())
        train_sft(SFTConfig(model=tiny_path, envs=["arithmetic"], env_rows=64, batch_size=8, steps=1, lr=1e-6,
                            run_dir=str(run), **kw), progress=False)
        end = load_file(str(run / "step_000001" / "model.safetensors"))   # against the start in the run's dtype
        return torch.cat([(end[k].float() - start[k].to(end[k].dtype).float()).flatten() for k in start])

    fp32 = delta(mixed_precision="no")
    mixed = delta(mixed_precision="bf16")
    with pytest.warns(UserWarning, match="no float32 master copy"):
        pure = delta(dtype="bfloat16")
    assert (fp32 != 0).float().mean() > 0.9
    assert (mixed != 0).float().mean() > 0.9
    cos = torch.nn.functional.cosine_similarity(fp32, mixed, dim=0)
    assert cos > 0.95 and 0.8 < mixed.norm() / fp32.norm() < 1.25, (cos, mixed.norm(), fp32.norm())
    assert (pure != 0).float().mean() < 0.1, (pure != 0).float().mean()


@pytest.mark.parametrize("override, message", [
    ("save_every=0", r"save_every: Input should be greater than or equal to 1 \(got 0\)"),
    ("grad_accum=0", r"grad_accum: Input should be greater than or equal to 1"),
    ("lr=-1e-3", r"lr: Input should be greater than 0 \(got -0.001\)"),
    ("temperature=-1", r"temperature: Input should be greater than or equal to 0"),
    ("clip_low=1.5", r"clip_low: Input should be less than 1"),
    ("batch_size=8", r"batch_size: Extra inputs are not permitted"),      # GRPO has no batch size
    ("group_size=1", r"group_size: GRPO's baseline is the group's mean"),
    ("minibatches=9", r"minibatches: 9 > prompts_per_step 8"),
    ("envs={a: -1}", r"envs: weights must be >= 0"),
])
def test_config_ranges_are_checked_before_any_model_loads(tmp_path, override, message):
    f = tmp_path / "grpo.yaml"
    f.write_text("model: /nonexistent/model\n")
    with pytest.raises(EvalgymError, match=rf"GRPOConfig \({f} \+ overrides\): .*{message}"):
        load_config(GRPOConfig, f, [override])


def test_overrides_read_numbers_as_yaml_1_2():
    cfg = load_config(GRPOConfig, None, ["lr=1e-3", "beta=5E-2", "tis_cap=2", "envs=[arithmetic, fractions]"])
    assert cfg.lr == 1e-3 and cfg.beta == 0.05 and cfg.tis_cap == 2.0
    assert cfg.envs == {"arithmetic": 1.0, "fractions": 1.0}


def test_gradient_checkpointing_gives_the_same_gradients(tiny_path):
    from transformers import AutoModelForCausalLM

    from evalgym.logprobs import CausalLMScorer

    ids = torch.randint(4, 100, (3, 16), generator=torch.Generator().manual_seed(0))
    attn = torch.ones_like(ids)
    mask = torch.zeros(3, 15)
    mask[:, 6:] = 1
    out = []
    for ckpt in (False, True):
        model = AutoModelForCausalLM.from_pretrained(tiny_path).train()
        if ckpt:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        lp = CausalLMScorer(model)(ids, attn, mask, share_prompts=True)
        lp.sum().backward()
        out.append((lp.detach(), [p.grad for p in model.parameters()]))
    assert torch.allclose(out[0][0], out[1][0], atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(out[0][1], out[1][1]))
