"""Every built-in env, one registration line each. Bump an env's version when its prompt, answer
extraction or reward changes; keep the old version registered while results refer to it."""

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


def _generated(generate: Any, default_instruction: str = procedural.SHORT_INSTRUCTION) -> Any:
    def source(info: Any, seed: int = 0, instruction: str = default_instruction, **knobs: Any) -> Any:
        return GeneratedSource(info, generate, seed=seed, instruction=instruction, **knobs)

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

    register("gsm8k", 0, domain="math", verifier="math", source=math_data.gsm8k_source,
             description="GSM8K grade-school word problems (train 7473 / test 1319)")
    register("math", 0, domain="math", verifier="math", source=math_data.math_source,
             description="MATH competition problems, all 5000 test / 7500 train")
    register("math500", 0, domain="math", verifier="math", source=math_data.math500_source,
             description="MATH-500, the PRM800K test subset")
    register("countdown", 0, domain="countdown", verifier="countdown", source=countdown.countdown_source,
             description="Countdown with 3 numbers (d1 test set)")
    register("countdown-gen", 0, domain="countdown", verifier="countdown", source=countdown.countdown_gen_source,
             description="Countdown, procedural: knobs count, max_number")
    register("arithmetic", 0, domain="math", verifier="math", source=_generated(procedural.arithmetic),
             description="Integer arithmetic, procedural: knobs digits, terms, ops")
    register("linear-equations", 0, domain="math", verifier="math",
             source=_generated(procedural.linear_equations),
             description="Solve a x + b = c, procedural: knobs coef_max, solution_max")
    register("fractions", 0, domain="math", verifier="math", source=_generated(procedural.fractions),
             description="Fraction arithmetic, procedural: knobs den_max, terms, ops")
    register("retry-arithmetic", 0, domain="math", verifier="math", source=_generated(procedural.arithmetic),
             max_turns=3, description="Multi-turn: arithmetic with feedback and up to 3 attempts")
    register("humaneval", 0, domain="code", verifier="code", source=code_data.humaneval_source,
             description="HumanEval: 164 function completions with hidden tests")
    register("mbpp", 0, domain="code", verifier="code", source=code_data.mbpp_source,
             description="MBPP full (splits by task id: test 500 / train 374 / validation 90 / prompt 10)")
    register("mbpp-sanitized", 0, domain="code", verifier="code", source=code_data.mbpp_sanitized_source,
             description="MBPP sanitized (427 hand-checked rows, same id splits)")
    register("code-gen", 0, domain="code", verifier="code",
             source=_generated(code_gen.generate, code_data.CODE_INSTRUCTION),
             description="Procedural function-writing tasks: knobs tasks, tests")
    register("ifeval", 0, domain="instruction-following", verifier="ifeval", source=ifeval.ifeval_source,
             description="IFEval: 541 prompts with verifiable instructions (lm-eval's checkers)")
    register("reasoning-gym", 0, domain="reasoning-gym", verifier="reasoning-gym", source=_rg_source,
             description="Any reasoning-gym dataset: kwargs dataset, size, seed, config")
    from evalgym.envs.reasoning_gym_env import BUILTIN

    for name in BUILTIN:
        register(f"rg-{name.replace('_', '-')}", 0, domain="reasoning-gym", verifier="reasoning-gym",
                 source=partial(_rg_source, dataset=name), description=f"reasoning-gym {name}")
