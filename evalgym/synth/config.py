"""The configuration of one synthetic-data run: the fields of ``evalgym synth`` and of a recipe's
``trainer: synth`` stage (the same model; a bad value is an error naming its field).

    cfg = SynthConfig(teacher="runs/expert/step_000040", envs=["arithmetic"], num_prompts=256, n=8,
                      keep="correct", shapes=["sft", "dpo"], out="data/arith-synth")
    synthesize(cfg)      # evalgym.synth.pipeline

Where prompts come from: ``envs`` (each env's ``split``, never its evaluation split) and/or ``prompts`` (a
JSONL, parquet or HF dataset folder of rows ``{"prompt": str | messages, "answer"?, "env"?, "domain"?}``).
Who answers: ``teacher`` (every problem) or ``teachers`` (``{domain or env: model}``, routed as distillation
routes them), on ``teacher_backend``; in a recipe the stage's ``from`` model when neither is set. How
answers are checked (``verify``): ``auto`` uses the env's verifier where the problem has one and the
``judge`` elsewhere (unverified when no judge is given); ``judge`` judges everything; ``none`` nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Backend = Literal["hf", "vllm", "openai"]


class ProposeConfig(BaseModel):
    """Teacher-proposed problems from seed problems (the envs' training split)."""

    model_config = ConfigDict(extra="forbid")

    num: int = Field(0, ge=0)                     # problems to propose (0: off)
    modes: list[Literal["rephrase", "numbers", "compose"]] = ["numbers"]
    agreement: float = Field(0.75, gt=0.0, le=1.0)   # share of the n answers that must agree to keep a problem
    model: str | None = None                      # proposer (default: the problem's teacher)
    max_tokens: int = Field(160, ge=8)
    temperature: float = Field(1.0, ge=0.0)


class CurriculumConfig(BaseModel):
    """Keep prompts the current model sometimes solves: ``n`` samples each, passes within ``band``."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None                      # the current model (default: the run's `model`)
    backend: Backend = "hf"
    n: int = Field(8, ge=2)
    band: tuple[int, int] | None = None           # passes kept (default: 1 .. n-1: not always, not never)
    levels: list[dict[str, Any]] = []             # difficulty ladder: env knobs per level ([]: the env's knobs)
    candidates: int | None = Field(None, ge=1)    # prompts probed per env and level (default: num_prompts)
    max_tokens: int | None = Field(None, ge=1)    # default: the run's max_tokens


class SynthConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    # where it goes (a recipe stage sets model and run_dir; the dataset is then run_dir/dataset)
    out: str | None = None
    model: str | None = None
    run_dir: str | None = None
    name: str | None = None
    overwrite: bool = False
    push_to_hub: str | None = None
    # prompts
    envs: list[str] = []
    split: str = "train"
    env_kwargs: dict[str, dict[str, Any]] = {}
    prompts: str | None = None
    num_prompts: int | None = Field(64, ge=1)     # per env; of a prompt file (None: all its rows)
    seed: int = Field(0, ge=0)
    # teachers and sampling
    teacher: str | None = None
    teachers: dict[str, str] = {}
    teacher_backend: Backend = "hf"
    teacher_kwargs: dict[str, Any] = {}
    n: int = Field(4, ge=1)
    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1)
    stop: list[str] = []
    batch_prompts: int = Field(16, ge=1)
    shard_prompts: int = Field(32, ge=1)
    # verification
    verify: Literal["auto", "env", "judge", "none"] = "auto"
    judge: str | None = None
    judge_backend: Backend = "hf"
    judge_kwargs: dict[str, Any] = {}
    rubric: str | None = None
    judge_threshold: float = Field(0.7, ge=0.0, le=1.0)
    # what is kept and how it is shaped
    keep: Literal["correct", "best", "all"] = "correct"
    max_per_prompt: int | None = Field(None, ge=1)
    pass_band: tuple[int, int] | None = None      # keep prompts solved by lo..hi of the n samples
    shapes: list[Literal["sft", "dpo", "rl"]] = ["sft"]
    pairs: Literal["verified", "delta"] = "verified"
    weak_teacher: str | None = None               # delta pairs: the weaker model (its sample is rejected)
    weak_n: int = Field(1, ge=1)
    max_pairs_per_prompt: int = Field(1, ge=1)
    # new problems
    propose: ProposeConfig = ProposeConfig()
    curriculum: CurriculumConfig | None = None
    # dedup and decontamination
    dedup: bool = True
    near_dup: float = Field(0.8, ge=0.0, le=1.0)  # Jaccard of 3-token shingles; 0: exact duplicates only
    decontam: bool = True
    ngram: int = Field(13, ge=1)
    decontam_coverage: float = Field(0.5, ge=0.0, le=1.0)   # share of an eval doc's windows to call it copied (0: any)
    decontam_envs: list[str] | None = None        # None: every registered env
    lmeval_tasks: list[str] | None = None         # None: every lm-eval task with local data
    procedural_docs: int = Field(500, ge=1)

    @field_validator("pass_band")
    @classmethod
    def _band(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and not 0 <= v[0] <= v[1]:
            raise ValueError(f"pass_band must be [lo, hi] with 0 <= lo <= hi, got {list(v)}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SynthConfig:
        if not self.envs and not self.prompts and not self.propose.num:
            raise ValueError("give envs (prompts from env splits) or prompts (a file of prompt rows)")
        if self.pass_band is not None and self.pass_band[1] > self.n:
            raise ValueError(f"pass_band {list(self.pass_band)}: more passes than n={self.n} samples")
        if self.pairs == "delta" and "dpo" in self.shapes and not self.weak_teacher:
            raise ValueError("pairs: delta needs weak_teacher (the weaker model whose samples are rejected)")
        if self.verify == "judge" and not self.judge:
            raise ValueError("verify: judge needs judge (a model)")
        if self.propose.num and not self.envs:
            raise ValueError("propose.num needs envs: seed problems come from their training split")
        if self.curriculum is not None and not self.envs:
            raise ValueError("curriculum needs envs (it probes the current model on their problems)")
        if self.out is None and self.run_dir is None:
            raise ValueError("out: the dataset folder to write is required")
        return self

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out else Path(str(self.run_dir)) / "dataset"

    def teacher_map(self) -> tuple[dict[str, str], str | None]:
        """(routes {domain or env: model}, default teacher): ``teacher`` is the default for every problem."""
        default = self.teacher or (None if self.teachers else self.model)
        return dict(self.teachers), default

    def generation_fields(self) -> dict[str, Any]:
        """What decides the generated samples (a change makes old shards unusable)."""
        skip = {"out", "run_dir", "name", "overwrite", "push_to_hub", "keep", "max_per_prompt", "pass_band",
                "shapes", "pairs", "max_pairs_per_prompt", "dedup", "near_dup", "decontam", "ngram", "decontam_coverage",
                "decontam_envs", "lmeval_tasks", "procedural_docs"}
        return self.model_dump(mode="json", exclude=skip)

    def card_config(self) -> dict[str, Any]:
        """The config as the dataset card records it (where it was written is not part of it)."""
        return self.model_dump(mode="json", exclude={"out", "run_dir", "overwrite"})
