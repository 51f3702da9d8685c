"""``evalgym.logprobs``: chosen-token log-probs (and top-k) without the batch's full log-softmax — the same
values and gradients as the full path, shared prompts and packed rows included, on the tiny model and on
a cut-down SmolLM2 (real BPE tokenizer, 49k vocabulary, tied embeddings)."""

from __future__ import annotations

import pytest
import torch

from evalgym.logprobs import CausalLMScorer, full_logprobs, selective_logprobs


def _rows(vocab: int, seed: int = 0):
    """6 rows: rows 0-2 share a prompt (a group), row 2's mask has a gap (an env turn), padding on 1 and 4."""
    g = torch.Generator().manual_seed(seed)
    B, L = 6, 20
    ids = torch.randint(4, vocab, (B, L), generator=g)
    ids[1, :8] = ids[0, :8]
    ids[2, :8] = ids[0, :8]
    attn = torch.ones(B, L, dtype=torch.long)
    attn[1, 15:] = 0
    attn[4, 10:] = 0
    mask = torch.zeros(B, L - 1)
    mask[0, 7:19] = 1
    mask[1, 7:14] = 1
    mask[2, 7:12] = 1
    mask[2, 14:19] = 1
    mask[3, 3:19] = 1
    mask[4, 5:9] = 1
    mask[5, 9:19] = 1
    return ids, attn, mask


def _grads(model, value):
    model.zero_grad()
    value.backward()
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("which", ["tiny", "smollm2"])
def test_scorer_equals_the_full_log_softmax_values_and_gradients(which, tiny_path, smollm2_small_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_path if which == "tiny" else smollm2_small_path).train()
    ids, attn, mask = _rows(model.config.vocab_size)
    weights = torch.linspace(-1, 1, ids.shape[0])[:, None]
    ref = full_logprobs(model, ids, attn) * mask
    ref_grads = _grads(model, (ref * weights).sum())
    scorer = CausalLMScorer(model)
    for share in (False, True):
        out = scorer(ids, attn, mask, share_prompts=share)
        assert (out * (1 - mask)).abs().sum() == 0
        assert torch.allclose(out, ref.detach(), atol=2e-5), (share, (out - ref).abs().max())
        for a, b in zip(ref_grads, _grads(model, (out * weights).sum())):
            assert torch.allclose(a, b, rtol=1e-3, atol=1e-5 * float(a.abs().max()) + 1e-8)


def test_topk_and_rest_bucket(tiny_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_path)
    ids, attn, mask = _rows(model.config.vocab_size, seed=1)
    topk = torch.randint(0, model.config.vocab_size, (ids.shape[0], ids.shape[1] - 1, 5))
    topk = torch.sort(topk, -1).values
    topk[..., 1:][topk[..., 1:] == topk[..., :-1]] = 3   # duplicates would be double-counted: make them unique-ish
    with torch.no_grad():
        lp, top, rest = CausalLMScorer(model)(ids, attn, mask, topk_ids_BTK=topk)
        full = torch.log_softmax(model(input_ids=ids, attention_mask=attn).logits[:, :-1].float(), -1)
    sel = mask.bool()
    assert torch.allclose(top[sel], full.gather(-1, topk)[sel], atol=1e-5)
    rest_ref = full.scatter(-1, topk, float("-inf")).logsumexp(-1)
    assert torch.allclose(rest[sel], rest_ref[sel], atol=1e-5)
    assert torch.allclose(lp[sel], full.gather(-1, ids[:, 1:, None])[..., 0][sel], atol=1e-5)


def test_chunks_are_recomputed_not_kept():
    """The autograd graph of the chunked path holds no [N, V] logits: saved tensors are its inputs."""
    torch.manual_seed(0)
    N, H, V = 64, 16, 5000
    h = torch.randn(N, H, requires_grad=True)
    w = torch.randn(V, H, requires_grad=True)
    targets = torch.randint(0, V, (N,))
    saved = []

    def pack_hook(t):
        saved.append(tuple(t.shape))
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack_hook, lambda t: t):
        (out,) = selective_logprobs(h, w, targets, chunk=16)
    assert (5000, 16) in saved                        # the weight itself is kept ...
    assert not [s for s in saved if s[-1] == V], saved   # ... but no [positions, V] logits
    ref = torch.log_softmax(h @ w.T, -1).gather(-1, targets[:, None])[:, 0]
    assert torch.allclose(out, ref, atol=1e-5)
    g1 = torch.autograd.grad(out.sum(), [h, w])
    g0 = torch.autograd.grad(ref.sum(), [h, w])
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g0, g1))
