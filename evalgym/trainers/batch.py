"""From trajectories to the typed training batch (``evalgym.types.TrainBatch``), and packed rows.

    ep = episode_tokens(trajectory)          # ids, which of them the policy sampled, their log-probs
    batch = train_batch([Row(ep, advantage=1.0, group=0)], pad_id=0)

An episode is token-exact when each turn's prompt ids extend the previous turn's prompt and completion
ids (the env appended its tokens after what the sampler produced, nothing was re-tokenized): then the
whole episode is one sequence and every assistant turn is in the loss mask, env and tool tokens are not.
Otherwise (a multi-turn env that re-renders its history) only the last turn is trained on.

:func:`pack` lays sequences end to end in rows (padding-free; positions restart at 0 for each sequence,
and the model attends only within a sequence), for the supervised trainers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from evalgym.types import TrainBatch, Trajectory


@dataclass(frozen=True)
class EpisodeTokens:
    """One episode as tokens. ``sampled[i]``: token i was produced by the policy (trained on);
    ``logprobs[i]``: the sampler's log-prob of token i (0.0 where not sampled or not reported)."""

    ids: tuple[int, ...]
    sampled: tuple[bool, ...]
    logprobs: tuple[float, ...]
    has_logprobs: bool

    @property
    def first_sampled(self) -> int:
        """Index of the first sampled token: everything before it is the prompt."""
        return self.sampled.index(True) if True in self.sampled else len(self.ids)

    @property
    def num_sampled(self) -> int:
        return sum(self.sampled)


def is_token_exact(traj: Trajectory) -> bool:
    prev: list[int] | None = None
    for s in traj.steps:
        c = s.completion
        if prev is not None and list(c.prompt_token_ids[:len(prev)]) != prev:
            return False
        prev = list(c.prompt_token_ids) + list(c.token_ids)
    return True


def episode_tokens(traj: Trajectory) -> EpisodeTokens:
    """The episode's token sequence with its sampled turns marked (every assistant turn when the episode is
    token-exact, else the last turn only)."""
    steps = traj.steps if is_token_exact(traj) else traj.steps[-1:]
    last = steps[-1].completion
    ids = list(last.prompt_token_ids) + list(last.token_ids)
    sampled = [False] * len(ids)
    logprobs = [0.0] * len(ids)
    has = True
    for s in steps:
        c = s.completion
        start = len(c.prompt_token_ids)
        for j in range(len(c.token_ids)):
            sampled[start + j] = True
            if c.logprobs:
                logprobs[start + j] = float(c.logprobs[j])
        if c.token_ids and not c.logprobs:
            has = False
    return EpisodeTokens(tuple(ids), tuple(sampled), tuple(logprobs), has)


@dataclass
class Row:
    """One sequence of a rollout batch and what the algorithm made of it.

    advantage: a number (the whole sequence) or one value per token of ``episode.ids`` (token i's value is
    used at the position that predicts it). ``train``: False keeps the row out of the loss (a grader error, a
    rejected sample). ``teacher_logp`` / ``teacher_top_ids`` / ``teacher_top_logp``: per token of
    ``episode.ids`` (only sampled positions are read)."""

    episode: EpisodeTokens
    advantage: float | Sequence[float] = 0.0
    group: int = 0
    train: bool = True
    labels: dict[str, str] = field(default_factory=dict)
    teacher_logp: Sequence[float] | None = None
    teacher_top_ids: Sequence[Sequence[int]] | None = None
    teacher_top_logp: Sequence[Sequence[float]] | None = None


def train_batch(rows: Sequence[Row], pad_id: int, stats: dict[str, float] | None = None) -> TrainBatch | None:
    """Rows → a right-padded ``TrainBatch`` (None when no row has a sampled token to train on). Rows that
    are not trained on still count for the batch's statistics but are left out of it."""
    kept = [r for r in rows if r.train and r.episode.num_sampled > 0]
    if not kept:
        return None
    L = max(len(r.episode.ids) for r in kept)
    B = len(kept)
    tokens = torch.full((B, L), pad_id, dtype=torch.long)
    attention = torch.zeros((B, L), dtype=torch.long)
    mask = torch.zeros((B, L - 1))
    behavior = torch.zeros((B, L - 1))
    advantages = torch.zeros((B, L - 1))
    has_teacher = kept[0].teacher_logp is not None
    teacher = torch.zeros((B, L - 1)) if has_teacher else None
    K = len(kept[0].teacher_top_ids[kept[0].episode.first_sampled]) if kept[0].teacher_top_ids is not None else 0
    top_ids = torch.arange(K).expand(B, L - 1, K).clone() if K else None    # masked positions: any valid ids
    top_logp = torch.full((B, L - 1, K), -torch.log(torch.tensor(float(K))).item()) if K else None
    for b, r in enumerate(kept):
        ep = r.episode
        n = len(ep.ids)
        tokens[b, :n] = torch.tensor(ep.ids)
        attention[b, :n] = 1
        s = torch.tensor(ep.sampled[1:], dtype=torch.float32)      # position t predicts token t+1
        mask[b, :n - 1] = s
        behavior[b, :n - 1] = torch.tensor(ep.logprobs[1:])
        if isinstance(r.advantage, (int, float)):
            advantages[b, :n - 1] = float(r.advantage) * s
        else:
            advantages[b, :n - 1] = torch.tensor([float(a) for a in r.advantage[1:]]) * s
        if teacher is not None:
            if r.teacher_logp is None:
                raise ValueError("train_batch: every row needs teacher_logp when one has it")
            teacher[b, :n - 1] = torch.tensor([float(x) for x in r.teacher_logp[1:]]) * s
        if K:
            for i in range(1, n):
                if ep.sampled[i]:
                    top_ids[b, i - 1] = torch.tensor(r.teacher_top_ids[i])
                    top_logp[b, i - 1] = torch.tensor(r.teacher_top_logp[i], dtype=torch.float32)
    names = sorted({k for r in kept for k in r.labels})
    return TrainBatch(
        tokens_BL=tokens, attention_BL=attention, loss_mask_BT=mask, behavior_logp_BT=behavior,
        has_behavior_B=torch.tensor([r.episode.has_logprobs for r in kept]), advantages_BT=advantages,
        group_B=torch.tensor([r.group for r in kept]), teacher_logp_BT=teacher, teacher_top_ids_BTK=top_ids,
        teacher_top_logp_BTK=top_logp, labels={k: tuple(r.labels.get(k, "") for r in kept) for k in names},
        stats=dict(stats or {}))


def minibatch_rows(batch: TrainBatch, minibatches: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """Row indices of each minibatch: whole groups, split as evenly as the groups allow; ``generator``
    shuffles the groups (each epoch), None keeps the batch's order."""
    groups = torch.unique_consecutive(batch.group_B)
    order = groups if generator is None else groups[torch.randperm(len(groups), generator=generator)]
    out = []
    for part in torch.tensor_split(order, min(minibatches, len(order))):
        rows = torch.nonzero(torch.isin(batch.group_B, part)).flatten()
        if len(rows):
            out.append(rows)
    return out


# -- packing (supervised trainers) ------------------------------------------------------------------------


@dataclass(frozen=True)
class Packed:
    """Sequences laid end to end in R rows of width W. ``positions_RW`` restart at 0 for each sequence (the
    model attends within a sequence only); ``mask_RT`` ``[R, W-1]``: positions whose next token is scored;
    ``seq_RT``: which input sequence that scored token belongs to (-1: none); ``spans[i]``: (row, start,
    length) of input sequence i."""

    tokens_RW: torch.Tensor
    positions_RW: torch.Tensor
    mask_RT: torch.Tensor
    seq_RT: torch.Tensor
    num_seqs: int
    spans: tuple[tuple[int, int, int], ...] = ()


def pack(seqs: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int, capacity: int | None = None) -> Packed:
    """``seqs``: (ids, scored) pairs, ``scored[i]`` 1 when token i is a target. First-fit decreasing into
    rows of ``capacity`` tokens (default: the longest sequence). The tail of a row is padding, its own
    segment (positions from 0), never scored."""
    cap = max(capacity or 0, max(len(ids) for ids, _ in seqs))
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i][0]))
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = len(seqs[i][0])
        slot = next((r for r, free in enumerate(room) if free >= n), None)
        if slot is None:
            rows.append([])
            room.append(cap)
            slot = len(rows) - 1
        rows[slot].append(i)
        room[slot] -= n
    W = max(cap - free for free in room)
    R = len(rows)
    tokens = torch.full((R, W), pad_id, dtype=torch.long)
    positions = torch.zeros((R, W), dtype=torch.long)
    mask = torch.zeros((R, W - 1))
    seq = torch.full((R, W - 1), -1, dtype=torch.long)
    spans: list[tuple[int, int, int]] = [(0, 0, 0)] * len(seqs)
    for r, members in enumerate(rows):
        at = 0
        for i in members:
            ids, scored = seqs[i]
            n = len(ids)
            spans[i] = (r, at, n)
            tokens[r, at:at + n] = torch.tensor(list(ids))
            positions[r, at:at + n] = torch.arange(n)
            for j in range(1, n):
                if scored[j]:
                    mask[r, at + j - 1] = 1.0
                    seq[r, at + j - 1] = i
            at += n
        positions[r, at:] = torch.arange(W - at)
    return Packed(tokens, positions, mask, seq, len(seqs), tuple(spans))


def per_sequence_sum(values_RT: torch.Tensor, packed: Packed) -> torch.Tensor:
    """Sum of ``values_RT`` over each input sequence's scored positions → ``[num_seqs]``."""
    out = torch.zeros(packed.num_seqs, dtype=values_RT.dtype, device=values_RT.device)
    sel = packed.seq_RT >= 0
    return out.index_add(0, packed.seq_RT[sel].to(values_RT.device), values_RT[sel.to(values_RT.device)])


def padded(seqs: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int) -> dict[str, Any]:
    """The same sequences one per row, right-padded (the layout DDP trainers and comparisons use)."""
    L = max(len(ids) for ids, _ in seqs)
    tokens = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    attention = torch.zeros((len(seqs), L), dtype=torch.long)
    mask = torch.zeros((len(seqs), L - 1))
    for b, (ids, scored) in enumerate(seqs):
        tokens[b, :len(ids)] = torch.tensor(list(ids))
        attention[b, :len(ids)] = 1
        mask[b, :len(ids) - 1] = torch.tensor([float(x) for x in list(scored)[1:]])
    return {"tokens": tokens, "attention": attention, "mask": mask}
