"""Synthetic data: generate with teachers, verify, keep, deduplicate, decontaminate and publish a dataset.

    from evalgym.synth import SynthConfig, synthesize
    synthesize(SynthConfig(teacher="smollm2-135m", envs=["gsm8k"], num_prompts=64, n=4, out="data/gsm8k-synth"))

    evalgym synth --teacher MODEL --env ENV [--split train] --num-prompts K --n G [--keep correct|best|all] --out DIR

Modules: ``config`` (the fields), ``sources`` (prompts from env splits and prompt files), ``generate``
(sharded, resumable generation and grading), ``problems`` (difficulty curriculum, teacher-proposed problems
with agreement), ``filters`` (keep rules and the sft / dpo / rl shapes), ``dedup``, ``decontam``,
``publish`` (HF dataset + parquet + JSONL + dataset card), ``pipeline`` (the whole run; the recipe stage),
``cli`` (the command). The LLM judge is ``evalgym.verifiers.judge``.
"""

from evalgym.synth.config import CurriculumConfig, ProposeConfig, SynthConfig
from evalgym.synth.pipeline import synthesize, train_synth

__all__ = ["CurriculumConfig", "ProposeConfig", "SynthConfig", "synthesize", "train_synth"]
