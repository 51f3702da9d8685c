"""The HF backend against transformers itself: greedy decoding, logprobs, seeds, stops, weights."""

from __future__ import annotations

import pytest
import torch

from evalgym.errors import EvalgymError
from evalgym.policies.base import SamplingParams, encode, make_policy, sample_seed
from evalgym.types import ChatMessage

CHAT = [{"role": "user", "content": "What is 12 + 30?"}]
PROMPTS = [CHAT, "The answer is", [2, 40, 41, 42], [ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")]]


def test_prompt_shapes_render_once(tiny_policy):
    tok = tiny_policy.tokenizer
    assert encode(tok, CHAT) == tok.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=True,
                                                         return_dict=False)
    assert encode(tok, "ab") == tok("ab", add_special_tokens=False)["input_ids"]
    assert encode(tok, [5, 6]) == [5, 6]
    with pytest.raises(EvalgymError, match="message 0"):
        encode(tok, [{"content": "no role"}])


def test_greedy_matches_transformers_generate(tiny_policy):
    tok, model = tiny_policy.tokenizer, tiny_policy.model
    out = tiny_policy.generate(PROMPTS, SamplingParams(temperature=0, max_tokens=24))
    for prompt, (c,) in zip(PROMPTS, out):
        ids = torch.tensor([encode(tok, prompt)])
        ref = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, do_sample=False,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        assert list(c.token_ids) == ref[0, ids.shape[1]:].tolist()
        assert c.prompt_token_ids == tuple(ids[0].tolist())


def test_logprobs_equal_score_and_a_plain_forward(tiny_policy):
    (group,) = tiny_policy.generate([CHAT], SamplingParams(n=3, max_tokens=20, seed=7))
    for c in group:
        assert len(c.logprobs) == len(c.token_ids) > 0 and all(lp <= 0 for lp in c.logprobs)
        scored = tiny_policy.score(CHAT, c.token_ids)
        assert max(abs(a - b) for a, b in zip(scored, c.logprobs)) < 1e-4
        full = torch.tensor([list(c.prompt_token_ids) + list(c.token_ids)])
        with torch.no_grad():
            lp = torch.log_softmax(tiny_policy.model(full).logits[0].float(), -1)
        p = len(c.prompt_token_ids)
        ref = [lp[p - 1 + i, t].item() for i, t in enumerate(c.token_ids)]
        assert max(abs(a - b) for a, b in zip(ref, c.logprobs)) < 1e-4
    # score_batch keeps request order, whatever the lengths
    reqs = [(CHAT, group[0].token_ids), ("x", [5]), (CHAT, group[1].token_ids[:3])]
    batch = tiny_policy.score_batch(reqs)
    assert [len(b) for b in batch] == [len(group[0].token_ids), 1, 3]


def test_seeds_are_per_sample_and_independent_of_batching(tiny_policy):
    sp = SamplingParams(n=4, max_tokens=16, seed=3)
    a = tiny_policy.generate(PROMPTS, sp)
    old = tiny_policy.batch_size
    try:
        tiny_policy.batch_size = 3
        b = tiny_policy.generate(PROMPTS, sp)
        # keys: the same prompt at another position draws the same samples when given the same key
        c = tiny_policy.generate([PROMPTS[2]], sp, keys=[2])
    finally:
        tiny_policy.batch_size = old
    ids = lambda out: [[x.token_ids for x in g] for g in out]  # noqa: E731
    assert ids(a) == ids(b)
    assert ids(c)[0] == ids(a)[2]
    assert len({x.token_ids for x in a[0]}) == 4  # four different samples
    other = tiny_policy.generate(PROMPTS, SamplingParams(n=4, max_tokens=16, seed=4))
    assert ids(other) != ids(a)
    assert sample_seed(3, 0, 1) != sample_seed(3, 1, 0)


def test_top_p_near_zero_is_greedy(tiny_policy):
    greedy = tiny_policy.generate([CHAT], SamplingParams(temperature=0, max_tokens=16))[0][0]
    nucleus = tiny_policy.generate([CHAT], SamplingParams(top_p=1e-6, max_tokens=16, seed=1))[0][0]
    assert nucleus.token_ids == greedy.token_ids


def test_stops_and_lengths(tiny_policy):
    tok = tiny_policy.tokenizer
    free = tiny_policy.generate([CHAT], SamplingParams(temperature=0, max_tokens=40))[0][0]
    assert free.finish_reason == "length" and len(free.token_ids) == 40
    stop = free.text[5:7]
    cut = tiny_policy.generate([CHAT], SamplingParams(temperature=0, max_tokens=40, stop=(stop,)))[0][0]
    assert cut.finish_reason == "stop" and stop not in cut.text and free.text.startswith(cut.text)
    assert len(cut.text) == free.text.find(stop)
    # an end-of-sequence id ends a sample and stays in its tokens (trainers learn to stop); here the
    # greedy first token is made an eos id, as a generation_config listing several eos ids would
    first = free.token_ids[0]
    saved = set(tiny_policy.eos_ids)
    tiny_policy.eos_ids = saved | {first}
    try:
        c = tiny_policy.generate([CHAT], SamplingParams(temperature=0, max_tokens=10))[0][0]
    finally:
        tiny_policy.eos_ids = saved
    assert c.token_ids == (first,) and c.finish_reason == "stop"
    assert tok.decode([tok.eos_token_id], skip_special_tokens=True) == ""


def test_load_weights_swaps_the_served_model(tiny_policy, tiny_path, tmp_path):
    from transformers import AutoModelForCausalLM

    (c,) = tiny_policy.generate([CHAT], SamplingParams(max_tokens=12, seed=0))[0]
    before = tiny_policy.score(CHAT, c.token_ids)
    original = {k: v.clone() for k, v in tiny_policy.model.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    new = {k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in original.items()}
    try:
        tiny_policy.load_weights(new)
        after = tiny_policy.score(CHAT, c.token_ids)
        ref_model = AutoModelForCausalLM.from_pretrained(tiny_path)
        ref_model.load_state_dict(new)
        ref_model.save_pretrained(tmp_path / "new")
        tiny_policy.tokenizer.save_pretrained(tmp_path / "new")
        ref = make_policy("hf", str(tmp_path / "new"), device="cpu").score(CHAT, c.token_ids)
        assert max(abs(a - b) for a, b in zip(after, ref)) < 1e-4
        assert max(abs(a - b) for a, b in zip(after, before)) > 1e-2
        tiny_policy.load_weights(str(tmp_path / "new"))  # a folder of safetensors works too
        assert max(abs(a - b) for a, b in zip(tiny_policy.score(CHAT, c.token_ids), ref)) < 1e-4
        with pytest.raises(EvalgymError, match="unexpected"):
            tiny_policy.load_weights({**new, "not.a.weight": torch.zeros(1)})
    finally:
        tiny_policy.load_weights(original)
    assert max(abs(a - b) for a, b in zip(tiny_policy.score(CHAT, c.token_ids), before)) < 1e-5


@pytest.mark.parametrize("field,kwargs", [("n", {"n": 0}), ("temperature", {"temperature": -1}),
                                          ("top_p", {"top_p": 0}), ("max_tokens", {"max_tokens": 0}),
                                          ("stop", {"stop": ("",)}), ("seed", {"seed": "x"})])
def test_sampling_errors_name_the_field(field, kwargs):
    with pytest.raises(EvalgymError, match=f"sampling.{field}"):
        SamplingParams(**kwargs)
    with pytest.raises(EvalgymError, match="unknown field"):
        SamplingParams.from_dict({"temprature": 1.0})


def test_unknown_backend():
    with pytest.raises(EvalgymError, match="unknown policy backend 'tgi'"):
        make_policy("tgi", "tiny")


def test_prompt_too_long_for_the_model(tiny_policy):
    with pytest.raises(EvalgymError, match="max_position_embeddings"):
        tiny_policy.generate(["x" * 2000], SamplingParams(max_tokens=100))
