"""The Ray backend of the rollout collector: engines and verifiers as Ray actors.

    engine = RayEngine("vllm", "smollm2-135m", num_engines=4, engine_options={"num_gpus": 1})
    result = collect(None, "gsm8k", num_prompts=512, n=8, engine=engine)
    engine.load_weights(trainer_model.state_dict())     # broadcast new weights to every engine
    engine.close()

The driver keeps the episodes (env state is tiny; agentic episodes' sandbox sessions are pooled in
the driver, and their turns rendered with the model's tokenizer loaded there); generation chunks go
round-robin to engine actors and run concurrently (the agentic runner keeps one request in flight per
engine actor); each chunk's grading goes to a verifier actor, which builds the env's
registered verifier by env id. Chunking and per-sample seeds are the same as the local engine's,
so a seeded run gives the same trajectories on one process or on a cluster.

``address``: ``None`` starts (or joins) a local Ray instance; ``"auto"`` or ``"ray://host:10001"``
joins an existing cluster, as ``ray.init`` does. A local instance started here (:func:`start_ray`) runs
its workers at the driver's priority, not Ray's default niceness 15, under which the engines and
graders get a few percent of a CPU beside any busy process (the trainer included).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from evalgym.errors import EvalgymError
from evalgym.policies.base import SamplingParams
from evalgym.types import Completion, Problem, Verdict


def start_ray(address: str | None = None, **kwargs: Any) -> None:
    """``ray.init`` as evalgym uses it: no dashboard, the actors' logs kept out of the driver's output.
    A local instance it starts runs its workers at niceness 0 (``RAY_worker_niceness``, which a user's own
    setting overrides): at Ray's default 15, an engine or a grader beside a busy process gets ~3 % of a
    CPU (4 % measured here beside two busy loops)."""
    import ray

    if address is None:
        os.environ.setdefault("RAY_worker_niceness", "0")
    ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False, **kwargs)


class _EngineActor:
    def __init__(self, backend: str, model: str, policy_kwargs: Mapping[str, Any]):
        from evalgym.policies.base import make_policy

        self.policy = make_policy(backend, model, **dict(policy_kwargs))

    def generate(self, prompts: list[Any], sampling: SamplingParams, keys: list[int]) -> list[list[Completion]]:
        return self.policy.generate(prompts, sampling, keys=keys)

    def score_batch(self, requests: list[tuple[Any, list[int]]]) -> list[list[float]]:
        return self.policy.score_batch(requests)

    def load_weights(self, weights: Any) -> bool:
        self.policy.load_weights(weights)
        return True

    def ready(self) -> bool:
        return True


class _VerifierActor:
    def __init__(self) -> None:
        import evalgym  # noqa: F401  (registers envs and verifiers)

        self.verifiers: dict[str, Any] = {}

    def verify(self, env_id: str, problems: list[Problem], responses: list[str]) -> tuple[list[Verdict], float]:
        from evalgym.envs.registry import CATALOG

        if env_id not in self.verifiers:
            if env_id not in CATALOG:
                raise EvalgymError(f"verifier actor: env {env_id!r} is not registered in the Ray worker "
                                   "(is its plugin installed on every node?)")
            self.verifiers[env_id] = CATALOG[env_id].verifier_factory()
        t0 = time.perf_counter()
        verdicts = self.verifiers[env_id].verify_batch(problems, responses)
        return verdicts, time.perf_counter() - t0


class RayEngine:
    def __init__(self, backend: str, model: str, *, num_engines: int = 1, num_verifiers: int = 1,
                 policy_kwargs: Mapping[str, Any] | None = None, engine_options: Mapping[str, Any] | None = None,
                 address: str | None = None, num_cpus: int | None = None):
        try:
            import ray
        except ImportError as e:
            raise EvalgymError("the Ray backend needs ray: pip install 'evalgym[ray]'") from e
        if num_engines < 1 or num_verifiers < 1:
            raise EvalgymError(f"RayEngine: num_engines and num_verifiers must be >= 1, got {num_engines}, {num_verifiers}")
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            start_ray(address, num_cpus=num_cpus)
            self._started = address is None
        self.policy_name = str(model)
        opts = dict(engine_options or {"num_cpus": 1})
        engine_cls = ray.remote(_EngineActor)
        verifier_cls = ray.remote(_VerifierActor)
        self.engines = [engine_cls.options(**opts).remote(backend, model, dict(policy_kwargs or {}))
                        for _ in range(num_engines)]
        self.verifiers = [verifier_cls.options(num_cpus=0).remote() for _ in range(num_verifiers)]
        ray.get([e.ready.remote() for e in self.engines])  # surface model-loading errors here
        self._next_engine = 0
        self._next_verifier = 0
        self._tokenizer: Any = False

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer in the driver (agentic episodes render their turns with it), or None when
        it is not at hand here (a hosted model): such episodes then send messages and are not token-exact."""
        if self._tokenizer is False:
            try:
                from transformers import AutoTokenizer

                from evalgym.models import resolve_model

                self._tokenizer = AutoTokenizer.from_pretrained(resolve_model(self.policy_name))
            except Exception:  # noqa: BLE001  (not a local model, no hub here)
                self._tokenizer = None
        return self._tokenizer

    def submit_generate(self, prompts: list[Any], sampling: SamplingParams, keys: list[int]) -> Any:
        actor = self.engines[self._next_engine % len(self.engines)]
        self._next_engine += 1
        return actor.generate.remote(prompts, sampling, keys)

    def submit_verify(self, env: Any, problems: list[Problem], responses: list[str]) -> Any:
        actor = self.verifiers[self._next_verifier % len(self.verifiers)]
        self._next_verifier += 1
        return actor.verify.remote(problems[0].env_id, problems, responses)

    def result(self, handle: Any) -> Any:
        return self._ray.get(handle)

    def load_weights(self, weights: Mapping[str, Any] | str) -> None:
        """Push the same weights to every engine (one object-store copy, shared by all)."""
        if not isinstance(weights, str):
            weights = {k: v.detach().cpu() for k, v in weights.items()}
        ref = self._ray.put(weights)
        self._ray.get([e.load_weights.remote(ref) for e in self.engines])

    def close(self) -> None:
        for a in [*self.engines, *self.verifiers]:
            try:
                self._ray.kill(a)
            except Exception:
                pass
        self.engines, self.verifiers = [], []
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
