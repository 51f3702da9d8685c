"""Teachers: logprobs of the student's tokens, routing by env/domain, and the tokenizer checks."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
import torch

from evalgym.errors import EvalgymError
from evalgym.policies.base import SamplingParams
from evalgym.rollouts import make_env
from evalgym.teachers import Router, Teacher, build_router, check_compatible, tokenizer_differences


@pytest.fixture(scope="module")
def teacher(tiny_path):
    return Teacher.load(tiny_path)


def test_teacher_scores_the_students_exact_tokens(teacher, tiny_policy):
    """The teacher's logprobs of a sampled completion equal a plain forward pass over prompt+completion."""
    c = tiny_policy.generate(["Compute 1 + 2."], SamplingParams(temperature=1.0, max_tokens=12, seed=3))[0][0]
    [lp] = teacher.logprobs([(c.prompt_token_ids, c.token_ids)])
    assert len(lp) == len(c.token_ids)
    model = teacher.policy.model
    ids = torch.tensor([list(c.prompt_token_ids) + list(c.token_ids)])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1].float()
    ref = torch.log_softmax(logits, -1).gather(-1, ids[0, 1:, None])[:, 0][len(c.prompt_token_ids) - 1:]
    assert torch.allclose(torch.tensor(lp), ref, atol=1e-4)
    # the same weights sampled it: the teacher agrees with the engine's own logprobs
    assert torch.allclose(torch.tensor(lp), torch.tensor(c.logprobs), atol=1e-4)
    assert teacher.tokens == len(c.token_ids)


def test_router_prefers_env_over_domain_and_handles_unrouted(teacher, tiny_path):
    other = Teacher("other", teacher.policy)
    arith = make_env("arithmetic").source.problem(0)         # domain math
    gsm_like = replace(arith, env_id="evalgym/gsm8k-v0")      # also math
    cd = make_env("countdown-gen").source.problem(0)         # domain countdown
    r = Router({"math": teacher, "arithmetic": other})
    assert r.route(arith) is other and r.key(arith) == "arithmetic"
    assert r.route(gsm_like) is teacher and r.key(gsm_like) == "math"
    with pytest.raises(EvalgymError, match=r"no teacher for domain 'countdown'.*unrouted: skip or default"):
        r.route(cd)
    assert Router({"math": teacher}, unrouted="skip").route(cd) is None
    assert Router({"math": teacher}, unrouted="default", default=other).route(cd) is other
    with pytest.raises(EvalgymError, match="needs a default teacher"):
        Router({"math": teacher}, unrouted="default")
    with pytest.raises(EvalgymError, match="unrouted must be"):
        Router({"math": teacher}, unrouted="drop")  # type: ignore[arg-type]
    # one model named by two routes is loaded once
    built = build_router({"math": tiny_path, "countdown": tiny_path})
    assert len(built.teachers()) == 1 and built.route(cd) is built.route(arith)


def test_same_tokenizer_is_compatible(teacher):
    assert tokenizer_differences(teacher.tokenizer, teacher.tokenizer) == []
    check_compatible(teacher.tokenizer, [teacher])


def test_a_different_vocabulary_is_named(teacher, smollm2_path):
    smol = Teacher.load(smollm2_path)
    with pytest.raises(EvalgymError) as e:
        check_compatible(teacher.tokenizer, [smol], student_name="tiny")
    msg = str(e.value)
    assert f"teacher {smollm2_path} vs tiny" in msg
    assert f"vocabulary differs (student {len(teacher.tokenizer.get_vocab())} tokens, teacher 49152)" in msg
    assert "chat template differs at character" in msg and "eos_token" not in msg  # both end turns with <|im_end|>


def _variant(tiny_path, tmp_path, name, edit):
    d = tmp_path / name
    shutil.copytree(tiny_path, d)
    edit(d)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(d)


def test_a_different_chat_template_or_special_token_is_named(teacher, tiny_path, tmp_path):
    def template(d):
        p = d / "chat_template.jinja"
        p.write_text(p.read_text().replace("<|im_start|>assistant", "<|im_start|>bot", 1))

    tok = _variant(tiny_path, tmp_path, "template", template)
    diffs = tokenizer_differences(teacher.tokenizer, tok)
    assert len(diffs) == 1 and diffs[0].startswith("chat template differs at character")
    assert "bot" in diffs[0]

    def eos(d):
        cfg = json.loads((d / "tokenizer_config.json").read_text())
        cfg["eos_token"] = cfg["pad_token"] if cfg.get("pad_token") != cfg["eos_token"] else "a"
        (d / "tokenizer_config.json").write_text(json.dumps(cfg))

    tok = _variant(tiny_path, tmp_path, "eos", eos)
    assert any(d.startswith("eos_token differs") for d in tokenizer_differences(teacher.tokenizer, tok))
