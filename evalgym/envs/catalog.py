"""Every built-in env, one registration line each. Bump an env's version when its prompt, answer
extraction, reward or problems change; keep the old version registered while results refer to it.

Splits: dataset envs keep their official splits (training defaults to ``train`` where there is one;
evaluation uses ``test``); procedural envs split their space by content hash into ``train`` (the
default) and ``eval`` (see ``evalgym.envs.sources``). v1 of the procedural envs is that split: v0 drew
"held-out" problems from a far seed of the same small space, so they were mostly training problems, and
v0 is not kept."""

from __future__ import annotations

from functools import partial
from typing import Any

from evalgym.envs import code_data, code_gen, countdown, ifeval, math_data, procedural
from evalgym.envs.registry import register, register_verifier
from evalgym.envs.sources import GeneratedSource


def _math_verifier() -> Any:
    from evalgym.verifiers.math import MathVerifier

    return MathVerifier()


def _countdown_verifier() -> Any:
    from evalgym.verifiers.countdown import CountdownVerifier

    return CountdownVerifier()


def _code_verifier() -> Any:
    import os

    from evalgym.verifiers.code import CodeVerifier

    return CodeVerifier(backend=os.environ.get("EVALGYM_SANDBOX", "local"))


def _ifeval_verifier() -> Any:
    from evalgym.verifiers.ifeval import IFEvalVerifier

    return IFEvalVerifier()


def _rg_verifier() -> Any:
    from evalgym.envs.reasoning_gym_env import ReasoningGymVerifier

    return ReasoningGymVerifier()


def _swe_lite_verifier() -> Any:
    from evalgym.envs.swe_lite import SweLiteVerifier

    return SweLiteVerifier()


def _generated(generate: Any, space: Any, default_instruction: str = procedural.SHORT_INSTRUCTION) -> Any:
    def source(info: Any, seed: int = 0, split: str = "train", instruction: str = default_instruction,
               **knobs: Any) -> Any:
        return GeneratedSource(info, generate, seed=seed, split=split, instruction=instruction, space=space, **knobs)

    return source


def _rg_source(info: Any, **kwargs: Any) -> Any:
    from evalgym.envs.reasoning_gym_env import ReasoningGymSource

    return ReasoningGymSource(info, **kwargs)


def register_all() -> None:
    register_verifier("math", _math_verifier)
    register_verifier("countdown", _countdown_verifier)
    register_verifier("reasoning-gym", _rg_verifier)
    register_verifier("code", _code_verifier)
    register_verifier("ifeval", _ifeval_verifier)

    data = {"splits": ("train", "test"), "eval_split": "test", "train_split": "train"}
    test_only = {"splits": ("test",), "eval_split": "test", "train_split": None}
    gen = {"splits": ("train", "eval"), "eval_split": "eval", "train_split": "train"}
    register("gsm8k", 0, domain="math", verifier="math", source=math_data.gsm8k_source, **data,
             description="GSM8K grade-school word problems (train 7473 / test 1319)")
    register("math", 0, domain="math", verifier="math", source=math_data.math_source, **data,
             description="MATH competition problems, all 5000 test / 7500 train")
    register("math500", 0, domain="math", verifier="math", source=math_data.math500_source, **test_only,
             description="MATH-500, the PRM800K test subset")
    register("countdown", 0, domain="countdown", verifier="countdown", source=countdown.countdown_source,
             **test_only, description="Countdown with 3 numbers (d1 test set)")
    register("countdown-gen", 1, domain="countdown", verifier="countdown", source=countdown.countdown_gen_source,
             **gen, description="Countdown, procedural: knobs count, max_number")
    register("arithmetic", 1, domain="math", verifier="math",
             source=_generated(procedural.arithmetic, procedural.ARITHMETIC_SPACE), **gen,
             description="Integer arithmetic, procedural: knobs digits, terms, ops")
    register("linear-equations", 1, domain="math", verifier="math",
             source=_generated(procedural.linear_equations, procedural.LINEAR_SPACE), **gen,
             description="Solve a x + b = c, procedural: knobs coef_max, solution_max")
    register("fractions", 1, domain="math", verifier="math",
             source=_generated(procedural.fractions, procedural.FRACTIONS_SPACE), **gen,
             description="Fraction arithmetic, procedural: knobs den_max, terms, ops")
    register("retry-arithmetic", 1, domain="math", verifier="math",
             source=_generated(procedural.arithmetic, procedural.ARITHMETIC_SPACE), max_turns=3, **gen,
             description="Multi-turn: arithmetic with feedback and up to 3 attempts")
    register("humaneval", 0, domain="code", verifier="code", source=code_data.humaneval_source, **test_only,
             description="HumanEval: 164 function completions with hidden tests")
    mbpp = {"splits": ("train", "validation", "test", "prompt"), "eval_split": "test", "train_split": "train"}
    register("mbpp", 0, domain="code", verifier="code", source=code_data.mbpp_source, **mbpp,
             description="MBPP full (splits by task id: test 500 / train 374 / validation 90 / prompt 10)")
    register("mbpp-sanitized", 0, domain="code", verifier="code", source=code_data.mbpp_sanitized_source, **mbpp,
             description="MBPP sanitized (427 hand-checked rows, same id splits)")
    register("code-gen", 1, domain="code", verifier="code",
             source=_generated(code_gen.generate, code_gen.SPACE, code_data.CODE_INSTRUCTION), **gen,
             description="Procedural function-writing tasks: knobs tasks, tests")
    register("ifeval", 0, domain="instruction-following", verifier="ifeval", source=ifeval.ifeval_source,
             **test_only, description="IFEval: 541 prompts with verifiable instructions (lm-eval's checkers)")
    register("reasoning-gym", 1, domain="reasoning-gym", verifier="reasoning-gym", source=_rg_source, **gen,
             description="Any reasoning-gym dataset: kwargs dataset, size, seed, config")
    # agentic envs (evalgym.envs.agentic, swe_lite): tools in a sandbox session per episode, up to max_turns turns
    from evalgym.agentic.env import AgenticEnv
    from evalgym.envs import agentic, swe_lite

    register_verifier("swe-lite", _swe_lite_verifier)
    tt = {"splits": ("train", "test"), "eval_split": "test", "train_split": "train", "env_class": AgenticEnv}
    register("python-math", 0, domain="math", verifier="math", source=agentic.python_math_source, max_turns=8, **tt,
             description="Agentic: math with a python tool, then submit; knob dataset (gsm8k, math, arithmetic...)")
    register("code-tools", 0, domain="code", verifier="code", source=agentic.code_tools_source, max_turns=8, **tt,
             description="Agentic: write a function, test it with python, submit; knob dataset (mbpp, code-gen...)")
    register("swe-lite", 0, domain="swe", verifier="swe-lite", source=swe_lite.swe_lite_source, max_turns=12,
             **gen, env_class=AgenticEnv,
             description="Agentic: fix a seeded bug in a generated repo with a shell; knobs modules, functions, bugs")
    from evalgym.envs.reasoning_gym_env import BUILTIN

    for name in BUILTIN:
        register(f"rg-{name.replace('_', '-')}", 1, domain="reasoning-gym", verifier="reasoning-gym",
                 source=partial(_rg_source, dataset=name), **gen, description=f"reasoning-gym {name}")
