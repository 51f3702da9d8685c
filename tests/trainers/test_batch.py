"""Trajectories → the typed batch; packed rows; minibatches of whole groups."""

from __future__ import annotations

import pytest
import torch

from evalgym.trainers.batch import Row, episode_tokens, minibatch_rows, pack, padded, per_sequence_sum, train_batch
from evalgym.types import ChatMessage, Completion, Problem, Step, TrainBatch, Trajectory, Verdict

P = Problem(id="p/0", env_id="evalgym/x-v0", env_version=0, domain="math", messages=(ChatMessage("user", "q"),),
            answer="1")
V = Verdict(reward=1.0, correct=True)


def _traj(turns: list[tuple[list[int], list[int], list[float]]]) -> Trajectory:
    steps = tuple(Step(messages=P.messages, completion=Completion(text="", token_ids=tuple(c), logprobs=tuple(lp),
                                                                  prompt_token_ids=tuple(p)), verdict=V, reward=1.0)
                  for p, c, lp in turns)
    return Trajectory(problem=P, steps=steps, reward=1.0)


def test_single_turn_episode():
    ep = episode_tokens(_traj([([1, 2, 3], [7, 8], [-0.5, -0.25])]))
    assert ep.ids == (1, 2, 3, 7, 8) and ep.sampled == (False, False, False, True, True)
    assert ep.logprobs == (0.0, 0.0, 0.0, -0.5, -0.25) and ep.first_sampled == 3 and ep.has_logprobs


def test_token_exact_multi_turn_trains_every_assistant_turn():
    # turn 2's prompt = turn 1's prompt + its completion + env tokens [20, 21]
    t = _traj([([1, 2], [7, 8], [-1.0, -2.0]), ([1, 2, 7, 8, 20, 21], [9], [-3.0])])
    ep = episode_tokens(t)
    assert ep.ids == (1, 2, 7, 8, 20, 21, 9)
    assert ep.sampled == (False, False, True, True, False, False, True)   # env tokens are not trained on
    assert ep.logprobs == (0.0, 0.0, -1.0, -2.0, 0.0, 0.0, -3.0)
    b = train_batch([Row(ep, advantage=0.5)], pad_id=0)
    assert b.loss_mask_BT.tolist() == [[0, 1, 1, 0, 0, 1]]
    assert b.advantages_BT.tolist() == [[0, 0.5, 0.5, 0, 0, 0.5]]
    assert b.behavior_logp_BT.tolist() == [[0, -1.0, -2.0, 0, 0, -3.0]]
    # a re-tokenized history (turn 2 does not extend turn 1): only the last turn
    t2 = _traj([([1, 2], [7, 8], [-1.0, -2.0]), ([1, 2, 99, 20], [9], [-3.0])])
    assert episode_tokens(t2).sampled == (False, False, False, False, True)


def test_train_batch_shapes_masks_and_left_out_rows():
    a = episode_tokens(_traj([([1, 2, 3], [7, 8], [-0.5, -0.25])]))
    b = episode_tokens(_traj([([1, 2], [9], [-1.0])]))
    batch = train_batch([Row(a, advantage=1.0, group=0, labels={"env": "x"}),
                         Row(b, advantage=-1.0, group=0, train=False),
                         Row(b, advantage=[0, 0, -2.0], group=1, labels={"env": "y"})], pad_id=0, stats={"r": 1.0})
    assert isinstance(batch, TrainBatch) and batch.size == 2 and batch.tokens_BL.shape == (2, 5)
    assert batch.attention_BL.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert batch.loss_mask_BT.tolist() == [[0, 0, 1, 1], [0, 1, 0, 0]]
    assert batch.advantages_BT.tolist() == [[0, 0, 1, 1], [0, -2, 0, 0]]
    assert batch.group_B.tolist() == [0, 1] and batch.labels["env"] == ("x", "y") and batch.stats == {"r": 1.0}
    sub = batch.select(torch.tensor([1]))
    assert sub.tokens_BL.shape == (1, 3) and sub.loss_mask_BT.tolist() == [[0, 1]]
    assert train_batch([Row(b, train=False)], pad_id=0) is None
    with pytest.raises(ValueError, match="advantages_BT"):
        TrainBatch(batch.tokens_BL, batch.attention_BL, batch.loss_mask_BT, batch.behavior_logp_BT,
                   batch.has_behavior_B, batch.advantages_BT[:, :2], batch.group_B)


def test_minibatches_hold_whole_groups():
    ep = episode_tokens(_traj([([1, 2], [9], [-1.0])]))
    batch = train_batch([Row(ep, group=g) for g in (0, 0, 1, 1, 2, 2, 3)], pad_id=0)
    parts = minibatch_rows(batch, 2)
    assert [p.tolist() for p in parts] == [[0, 1, 2, 3], [4, 5, 6]]
    shuffled = minibatch_rows(batch, 4, torch.Generator().manual_seed(0))
    assert sorted(i for p in shuffled for i in p.tolist()) == list(range(7))
    for p in shuffled:
        assert len(set(batch.group_B[p].tolist())) == 1


def test_packed_rows_give_the_padded_losses_and_gradients(tiny_path):
    """Padding-free packing (positions restart per sequence): the same per-sequence log-prob sums and
    gradients as one padded row per sequence."""
    from transformers import AutoModelForCausalLM

    from evalgym.logprobs import CausalLMScorer

    model = AutoModelForCausalLM.from_pretrained(tiny_path)
    scorer = CausalLMScorer(model)
    g = torch.Generator().manual_seed(0)
    seqs = []
    for n in (5, 17, 9, 30, 3, 12):
        ids = torch.randint(4, 120, (n,), generator=g).tolist()
        seqs.append((ids, [0] * (n // 2) + [1] * (n - n // 2)))
    p = pack(seqs, 0, capacity=32)
    assert p.tokens_RW.shape[0] < len(seqs)   # several sequences share rows
    weights = torch.linspace(0.5, 2.0, len(seqs))

    def run(packed: bool):
        model.zero_grad()
        if packed:
            sums = per_sequence_sum(scorer(p.tokens_RW, None, p.mask_RT, position_ids_BL=p.positions_RW), p)
        else:
            b = padded(seqs, 0)
            sums = scorer(b["tokens"], b["attention"], b["mask"]).sum(-1)
        (sums * weights).sum().backward()
        return sums.detach(), [q.grad.clone() for q in model.parameters()]

    (a, ga), (b, gb) = run(False), run(True)
    assert torch.allclose(a, b, atol=1e-4), (a, b)
    for x, y in zip(ga, gb):
        assert torch.allclose(x, y, rtol=1e-3, atol=1e-5 * float(x.abs().max()) + 1e-8)
