"""Trainer configs: pydantic models loaded from YAML with ``key=value`` overrides.

    cfg = load_config(SFTConfig, "sft.yaml", ["lr=1e-4", "steps=200"])

Every field has a type and a range; unknown keys, wrong types and out-of-range values are errors that name
the field, the file (or ``overrides``) and what is allowed — raised here, before any model loads. Overrides
take dotted keys (``sampling.temperature=0.7``) and YAML values (``envs=[a, b]``), read as YAML 1.2 reads
numbers: ``lr=1e-3`` is the float 0.001 (YAML 1.1, PyYAML's default, would read the string "1e-3").

Resuming a run dir under a changed config is refused except for the fields in ``RESUMABLE_FIELDS`` (how
long to run, how often to save or log, where the run dir now is): the one list the trainers and the recipe
runner both use.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticUndefined

from evalgym.errors import EvalgymError

RESUMABLE_FIELDS = frozenset({"steps", "save_every", "keep_last", "log_every", "run_dir", "report_to"})
TRACKERS = ("tensorboard", "wandb", "mlflow", "trackio")


def with_new_defaults(cls: type[BaseModel], saved: dict[str, Any]) -> dict[str, Any]:
    """A config saved (as JSON-shaped values) before some of ``cls``'s fields existed, with those fields at
    their defaults: a run written by an older evalgym compares equal to the same config today."""
    missing = {k: f.default for k, f in cls.model_fields.items()
               if k not in saved and f.default is not PydanticUndefined}
    return {**json.loads(json.dumps(missing, default=str)), **saved}


class LoRAConfig(BaseModel):
    """LoRA adapters (``evalgym/trainers/lora.py``): ``r`` rank (>= 1), ``alpha`` scale (the update is
    ``alpha / r * B A``), ``dropout`` on the adapter's input, ``target_modules``: leaf names of linear layers
    (``[q_proj, v_proj]``) or ``all-linear`` (every linear layer but the output head)."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, ge=1)
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats: ``1e-3`` and ``5E+2`` are numbers, not strings."""


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def load_yaml(text: str) -> Any:
    """YAML as configs and recipes read it (YAML 1.2 numbers)."""
    return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader subclass


class TrainConfig(BaseModel):
    """What every trainer shares."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = "tiny"                 # a built-in name, a folder (e.g. a previous stage's checkpoint) or hub id
    run_dir: str = "runs/run"
    seed: int = Field(0, ge=0)
    steps: int = Field(100, ge=1)       # optimizer steps (RL trainers: rollout batches; see minibatches/epochs)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(0, ge=0)
    lr_schedule: Literal["constant", "cosine"] = "constant"   # after warmup; cosine decays to 0 at `steps`
    grad_accum: int = Field(1, ge=1)    # micro-batches per optimizer step (memory; same data per step)
    max_grad_norm: float = Field(1.0, ge=0)   # 0: no clipping
    save_every: int = Field(50, ge=1)   # checkpoint every N steps (and at the end)
    keep_last: int | None = Field(None, ge=1)   # keep only the last N checkpoints (None: all)
    log_every: int = Field(1, ge=1)
    # Parameters and optimizer state: "auto" = float32 (the master copy AdamW needs: at lr 1e-6 a bf16
    # weight does not move); "bfloat16"/"float16" = pure low precision, only when asked (warned).
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    # Compute: "auto" = bf16 autocast on a GPU that has it, none on CPU; "bf16"/"fp16" force it (bf16 runs
    # on CPU too), "no" = the parameters' dtype.
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    gradient_checkpointing: bool = False   # recompute activations in backward: less memory, ~30% more compute
    fsdp: bool = False                  # shard weights, grads, AdamW state over the processes (FSDP2); also
                                        # what `accelerate launch --use_fsdp` asks for
    lora: LoRAConfig | None = None      # train a LoRA adapter on the frozen model (checkpoints hold the adapter)
    # experiment trackers beside metrics.jsonl (offline/local by default; evalgym/trainers/tracking.py)
    report_to: list[Literal["tensorboard", "wandb", "mlflow", "trackio"]] = []

    @field_validator("report_to")
    @classmethod
    def _trackers_installed(cls, v: list[str]) -> list[str]:
        """A tracker whose package is missing fails here, before any model loads, naming the pip extra."""
        import importlib.util

        def installed(name: str) -> bool:
            try:
                return importlib.util.find_spec(name) is not None
            except (ImportError, ValueError):
                return False

        missing = [t for t in v if not installed(t)]
        if missing:
            raise ValueError(f"{missing} not installed: pip install " + " ".join(f"'evalgym[{t}]'" for t in missing))
        if len(set(v)) != len(v):
            raise ValueError(f"{v} names a tracker twice")
        return v


class RowsConfig(TrainConfig):
    """Trainers over a fixed set of rows (SFT, reward model, DPO)."""

    batch_size: int = Field(8, ge=1)    # sequences per optimizer step (all processes together)
    max_len: int = Field(512, ge=2)     # tokens per sequence (longer rows are truncated)
    packing: bool = True                # padding-free: sequences concatenated into rows, positions reset


class RLConfig(TrainConfig):
    """What the RL trainers (GRPO, distillation, rejection sampling) share: a mixture of envs sampled each
    step, and how many optimizer updates one rollout batch makes."""

    envs: dict[str, float] = {"arithmetic": 1.0}     # env id -> mixture weight
    env_kwargs: dict[str, dict[str, Any]] = {}
    prompts_per_step: int = Field(8, ge=1)
    group_size: int = Field(8, ge=1)
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    # The policy the loss trains: true, the one the rollouts were sampled from, log-probs of logits /
    # temperature for the ratio, the KL and the gradient (as TRL and veRL); the engine then records its
    # log-probs under the sampling distribution. false: the untempered model's (T = 1) whatever the sampling
    # temperature (distillation's default: the teacher's log-probs are the untempered teacher's).
    tempered_logprobs: bool = True
    max_tokens: int = Field(64, ge=1)
    backend: Literal["hf", "vllm"] = "hf"   # the sampling engine
    # Updates per rollout batch: the batch is split into `minibatches` (whole groups each), one optimizer
    # step per minibatch, `epochs` passes. 1 x 1 is the on-policy step; more makes the ratio move, so the
    # clip range binds (PPO / GRPO / DAPO / GSPO as published).
    minibatches: int = Field(1, ge=1)
    epochs: int = Field(1, ge=1)
    clip_low: float = Field(0.2, ge=0, lt=1)
    clip_high: float = Field(0.2, ge=0)
    aggregation: Literal["token", "sequence", "constant"] = "token"
    ratio_level: Literal["token", "sequence"] = "token"
    beta: float = Field(0.0, ge=0)          # KL to the run's start model (k3), 0: none
    # Sampler/trainer mismatch (vLLM numerics, stale weights): weight each token by min(π_train/π_sampler,
    # tis_cap) (truncated importance sampling), and/or mask tokens whose ratio leaves ratio_band.
    tis_cap: float | None = Field(None, ge=1)
    ratio_band: tuple[float, float] | None = None
    # A grade that timed out or crashed is masked out of the loss and counted (grader_error_frac/<env>);
    # the run stops when an env's fraction averages above this over the last `grader_error_window` steps.
    grader_error_max: float = Field(0.5, ge=0, le=1)
    grader_error_window: int = Field(5, ge=1)
    # Rollout engines in their own processes (evalgym/trainers/async_rl.py). None: sample in the trainer's
    # process (hf: its own weights; vllm: an in-process engine). k >= 0: `engines` Ray actors (or the
    # OpenAI-compatible server at `engine_url`) generate while the trainer trains; a batch may be sampled
    # with weights up to k optimizer steps old (0: wait for every step's weights, the synchronous run).
    max_staleness: int | None = Field(None, ge=0)
    engines: int = Field(1, ge=1)
    engine_url: str | None = None           # an OpenAI-compatible server (vLLM in dev mode) as the engine
    engine_threads: int | None = Field(None, ge=1)   # torch threads of each engine actor (None: the trainer's)
    # stale samples: weight each token by min(pi_proximal / pi_behaviour, tis_cap or 2) on the log-probs the
    # engine recorded (decoupled PPO); false: trust them as on-policy (for comparison)
    stale_correction: bool = True

    @field_validator("envs", mode="before")
    @classmethod
    def _env_list(cls, v: Any) -> Any:
        """``envs: [a, b]`` is an equal-weight mixture."""
        return {str(name): 1.0 for name in v} if isinstance(v, (list, tuple)) else v

    @model_validator(mode="after")
    def _check(self) -> RLConfig:
        if not self.envs:
            raise ValueError("envs: name at least one env")
        bad = {k: w for k, w in self.envs.items() if not isinstance(w, (int, float)) or w < 0}
        if bad or sum(self.envs.values()) <= 0:
            raise ValueError(f"envs: weights must be >= 0 with a positive sum, got {self.envs}")
        unknown = sorted(set(self.env_kwargs) - set(self.envs))
        if unknown:
            raise ValueError(f"env_kwargs: {unknown} not in envs {sorted(self.envs)}")
        if self.ratio_band is not None:
            lo, hi = self.ratio_band
            if not 0 < lo <= 1 <= hi:
                raise ValueError(f"ratio_band: must satisfy 0 < low <= 1 <= high, got {self.ratio_band}")
        if self.max_staleness is None and (self.engines != 1 or self.engine_url):
            raise ValueError("engines/engine_url: out-of-process engines need max_staleness (0: synchronous)")
        if self.engine_url and self.engines != 1:
            raise ValueError(f"engines: {self.engines} with engine_url (one server is one engine)")
        if self.minibatches > self.prompts_per_step:
            raise ValueError(f"minibatches: {self.minibatches} > prompts_per_step {self.prompts_per_step} "
                             "(a minibatch holds whole groups)")
        return self

    @property
    def updates_per_step(self) -> int:
        return self.minibatches * self.epochs


C = TypeVar("C", bound=BaseModel)


def parse_override(item: str) -> tuple[str, Any]:
    """``key=value`` → (key, the value read as YAML 1.2; text that is not YAML stays a string)."""
    if "=" not in item:
        raise EvalgymError(f"override {item!r}: expected key=value")
    key, raw = item.split("=", 1)
    try:
        value = load_yaml(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    cur = data
    for p in parts[:-1]:
        nxt = cur.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise EvalgymError(f"override {key}: {p} is not a section")
        cur = nxt
    cur[parts[-1]] = value


def validation_message(e: ValidationError) -> str:
    """One line per problem: ``field: what is wrong`` (pydantic's message states the allowed range)."""
    out = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(config)"
        msg = err["msg"].removeprefix("Value error, ")
        out.append(f"{loc}: {msg} (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict)
                   else f"{loc}: {msg}")
    return "; ".join(out)


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> C:
    data: dict[str, Any] = {}
    where = "overrides"
    if path is not None:
        where = str(path)
        try:
            loaded = load_yaml(Path(path).read_text())
        except FileNotFoundError:
            raise EvalgymError(f"config file {path} does not exist") from None
        except yaml.YAMLError as e:
            raise EvalgymError(f"config file {path} is not valid YAML: {e}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise EvalgymError(f"config file {path}: expected a mapping of fields, got {type(loaded).__name__}")
        data = loaded or {}
        if overrides:
            where = f"{path} + overrides"
    for item in overrides:
        set_dotted(data, *parse_override(item))
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise EvalgymError(f"{cls.__name__} ({where}): {validation_message(e)}") from None
