"""Our envs for TRL users: the dataset columns and the reward function TRL's GRPOTrainer calls."""

from __future__ import annotations

import inspect

import pytest
import torch

from evalgym.errors import EvalgymError
from evalgym.rollouts import make_env
from evalgym.trainers.trl_rewards import trl_dataset, trl_reward


def test_reward_function_grades_with_the_envs_verifier():
    ds = trl_dataset("arithmetic", num=4, seed=0)
    assert set(ds.column_names) == {"prompt", "env_id", "problem_index"} and len(ds) == 4
    env = make_env("arithmetic")
    refs = [env.source.problem(i).reference for i in ds["problem_index"]]
    fn = trl_reward("arithmetic")
    # TRL passes prompts, completions and every dataset column as keyword arguments
    assert list(inspect.signature(fn).parameters)[:2] == ["prompts", "completions"]
    assert fn(prompts=ds["prompt"], completions=refs, problem_index=ds["problem_index"], env_id=ds["env_id"]) == [1.0] * 4
    chat = [[{"role": "assistant", "content": r}] for r in refs]
    assert fn(prompts=ds["prompt"], completions=chat, problem_index=ds["problem_index"]) == [1.0] * 4
    assert fn(prompts=ds["prompt"], completions=["\\boxed{nonsense}"] * 4, problem_index=ds["problem_index"]) == [0.0] * 4
    with pytest.raises(EvalgymError, match="problem_index"):
        fn(prompts=ds["prompt"], completions=refs)


def test_dataset_of_given_problems_keeps_their_order():
    ds = trl_dataset("arithmetic", indices=[5, 3, 5], ops="+-")
    env = make_env("arithmetic", ops="+-")
    assert ds["problem_index"] == [5, 3, 5]
    assert ds["prompt"][1] == [m.as_dict() for m in env.source.problem(3).messages]
    with pytest.raises(EvalgymError, match="num or indices"):
        trl_dataset("arithmetic", num=2, indices=[1])
    with pytest.raises(EvalgymError, match="out of range"):
        trl_dataset("arithmetic", indices=[3, -1])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_trl_grpo_trainer_trains_on_our_env_and_logs_our_verifiers_rewards(sft_arithmetic, tmp_path):
    """Real TRL: its GRPOTrainer samples from the SFT'd tiny model, our reward function grades, and the
    reward TRL logs each step is our verifier's reward of exactly the completions it sampled."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    ds = trl_dataset("arithmetic", num=8, seed=5, ops="+-")
    graded = trl_reward("arithmetic", ops="+-")
    calls = []

    def reward(prompts, completions, problem_index, **columns):
        out = graded(prompts, completions, problem_index=problem_index, **columns)
        calls.append({"prompts": prompts, "completions": completions, "problem_index": problem_index, "rewards": out})
        return out

    reward.__name__ = graded.__name__
    path = sft_arithmetic["checkpoint"]
    model = AutoModelForCausalLM.from_pretrained(path)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    args = GRPOConfig(output_dir=str(tmp_path / "trl"), max_steps=2, per_device_train_batch_size=8, num_generations=4,
                      max_completion_length=32, learning_rate=1e-3, seed=0, use_cpu=True, bf16=False,
                      gradient_checkpointing=False, logging_steps=1, save_strategy="no", report_to="none",
                      disable_tqdm=True)
    trainer = GRPOTrainer(model=model, processing_class=AutoTokenizer.from_pretrained(path), reward_funcs=[reward],
                          args=args, train_dataset=ds)
    trainer.train()

    logs = [h for h in trainer.state.log_history if "reward" in h]
    assert trainer.state.global_step == 2 and len(calls) == 2 and len(logs) == 2
    env = make_env("arithmetic", ops="+-")
    for call, log in zip(calls, logs):
        ids = call["problem_index"]
        assert len(ids) == 8 and ids[0] == ids[3] != ids[4] == ids[7]   # 2 prompts x 4 samples, group by group
        for prompt, completion, index, r in zip(call["prompts"], call["completions"], call["problem_index"],
                                                call["rewards"]):
            problem = env.source.problem(index)
            assert prompt == [m.as_dict() for m in problem.messages]   # the row's prompt is the row's problem
            env.reset(options={"index": index})                         # graded again, through the env's step
            assert env.step(completion[-1]["content"])[1] == r
        mean = sum(call["rewards"]) / len(call["rewards"])
        assert log["reward"] == pytest.approx(mean) and log[f"rewards/{graded.__name__}/mean"] == pytest.approx(mean)
    rewards = [r for c in calls for r in c["rewards"]]
    # the SFT'd model solves some, not all: a reward function returning a constant could not pass this
    assert 0 < sum(rewards) < len(rewards), rewards
    changed = any(not torch.equal(start[k], v) for k, v in trainer.model.state_dict().items())
    groups = [c["rewards"][i:i + 4] for c in calls for i in (0, 4)]
    assert changed == any(max(g) > min(g) for g in groups)   # TRL learns iff some group's rewards differ
