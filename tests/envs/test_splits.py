"""Splits and problem spaces (``evalgym.envs.sources``, ``evalgym.envs.registry.describe``).

Covers: train and eval problems of every procedural env are disjoint by content hash, whatever the
seeds (many seeds drawn, sets compared); a small space (one-digit sums, 100 problems) drawn to
exhaustion gives exactly the split sizes ``describe`` counts, and they add up to the space; the counted
spaces agree with brute-force draws of the generators (countdown, code-gen); asking a split for more
distinct problems than it holds is an error naming both numbers; an unknown split is an error naming
it and the splits there are; the canonical content does not depend on the prompt's wording; countdown
rows and generated countdown problems share one canonical form; dataset envs default to their train
split and evaluate on test; gsm8k train and test share no problem.
"""

from __future__ import annotations

import pytest

import evalgym  # noqa: F401
from evalgym.envs.registry import CATALOG, describe
from evalgym.envs.sources import UNLIMITED, distinct_indices, split_of
from evalgym.errors import EvalgymError
from evalgym.rollouts import make_env
from evalgym.types import content_hash

PROCEDURAL = [("arithmetic", {"ops": "+"}), ("arithmetic", {}), ("linear-equations", {"coef_max": 2}),
              ("fractions", {"den_max": 4}), ("countdown-gen", {"count": 2, "max_number": 9}),
              ("code-gen", {}), ("retry-arithmetic", {"ops": "+"}), ("rg-chain-sum", {"size": 300})]


def _hashes(env: str, knobs: dict, split: str, seed: int, n: int) -> set[str]:
    source = make_env(env, split=split, seed=seed, **knobs).source
    return {content_hash(source.problem(i)) for i in range(min(n, source.size))}


@pytest.mark.parametrize("env,knobs", PROCEDURAL, ids=[f"{e}-{k}" for e, k in PROCEDURAL])
def test_train_and_eval_are_disjoint_whatever_the_seeds(env, knobs):
    train = set().union(*(_hashes(env, knobs, "train", s, 150) for s in (0, 7, 10**9)))
    evals = set().union(*(_hashes(env, knobs, "eval", s, 150) for s in (0, 7, 10**9)))
    assert train and evals
    assert not train & evals
    assert {split_of(h) for h in train} == {"train"} and {split_of(h) for h in evals} == {"eval"}


def test_a_small_space_drawn_to_exhaustion_matches_its_count():
    info = describe("arithmetic", ops="+")
    assert info["space"] == 100 and info["exact"]
    sizes = info["split_sizes"]
    assert sizes["train"] + sizes["eval"] == 100 and 0 < sizes["eval"] < 40
    for split in ("train", "eval"):
        drawn = set().union(*(_hashes("arithmetic", {"ops": "+"}, split, s, 600) for s in (0, 10_000, 20_000)))
        assert len(drawn) == sizes[split]


@pytest.mark.parametrize("env,knobs,space", [("countdown-gen", {"count": 2, "max_number": 9}, 134),
                                             ("code-gen", {}, 41), ("arithmetic", {"digits": 2, "ops": "+"}, 10_000),
                                             ("linear-equations", {"coef_max": 2, "solution_max": 3}, 4 * 7 * 13)])
def test_counted_space_agrees_with_brute_force(env, knobs, space):
    info = describe(env, **knobs)
    assert info["space"] == space
    if space <= 200:
        seen = set()
        for split in ("train", "eval"):
            seen |= _hashes(env, knobs, split, 0, 6000)
        assert len(seen) == space


def test_more_distinct_problems_than_the_split_holds_is_an_error():
    source = make_env("arithmetic", ops="+", split="eval").source
    held = describe("arithmetic", ops="+")["split_sizes"]["eval"]
    assert len(distinct_indices(source, held)) == held
    with pytest.raises(EvalgymError) as exc:
        distinct_indices(source, held + 1)
    assert f"asked for {held + 1}" in str(exc.value) and f"holds {held}" in str(exc.value)
    dataset = make_env("humaneval").source
    with pytest.raises(EvalgymError, match="holds 164"):
        distinct_indices(dataset, 200)


def test_distinct_indices_are_distinct_problems():
    source = make_env("countdown-gen", count=2, max_number=9, split="eval").source
    idx = distinct_indices(source, 15)
    assert len({content_hash(source.problem(i)) for i in idx}) == 15
    assert idx != list(range(15))          # draws repeat in a small space: the scan skipped some


@pytest.mark.parametrize("env", ["arithmetic", "gsm8k", "countdown-gen", "humaneval", "rg-chain-sum"])
def test_unknown_split_names_it_and_what_exists(env):
    with pytest.raises(EvalgymError) as exc:
        make_env(env, split="validation-x")
    msg = str(exc.value)
    assert "'validation-x'" in msg
    assert ("train" in msg or "test" in msg)


def test_canonical_content_ignores_wording():
    plain = make_env("arithmetic", ops="+").source.problem(3)
    worded = make_env("arithmetic", ops="+", instruction="Answer in a box, please.").source.problem(3)
    assert plain.messages != worded.messages and content_hash(plain) == content_hash(worded)
    gsm = make_env("gsm8k", split="test").source.problem(0)
    gsm_worded = make_env("gsm8k", split="test", instruction="Think.").source.problem(0)
    assert content_hash(gsm) == content_hash(gsm_worded)


def test_countdown_rows_and_generated_share_a_canonical_form():
    row = make_env("countdown").source.problem(0)
    nums, target = sorted(row.extra["numbers"]), row.extra["target"]
    assert row.extra["canonical"] == f"countdown:{','.join(map(str, nums))}->{target}"
    gen = make_env("countdown-gen", count=3).source.problem(0)
    assert gen.extra["canonical"] == f"countdown:{','.join(map(str, sorted(gen.extra['numbers'])))}->{gen.extra['target']}"


def test_dataset_envs_train_on_train_and_evaluate_on_test():
    assert make_env("gsm8k").source.size == 7473           # the default is the training split
    assert CATALOG["evalgym/gsm8k-v0"].eval_split == "test"
    assert CATALOG["evalgym/humaneval-v0"].train_split is None
    assert CATALOG["evalgym/arithmetic-v1"].eval_split == "eval"
    train = make_env("gsm8k").source
    test = make_env("gsm8k", split="test").source
    overlap = ({content_hash(train.problem(i)) for i in range(train.size)}
               & {content_hash(test.problem(i)) for i in range(test.size)})
    assert not overlap


def test_describe_every_env():
    for env_id in CATALOG:
        if not env_id.startswith("evalgym/"):
            continue
        info = describe(env_id)
        assert info["id"] == env_id and set(info["split_sizes"]) <= set(info["splits"]) | {"default"}
        space = info["space"]
        assert space is None or (isinstance(space, int) and space > 0)
        size = make_env(env_id).source.size
        assert size == UNLIMITED or size <= (space or size)
