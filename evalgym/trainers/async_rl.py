"""Asynchronous RL: rollout engines in their own processes generate the next batches while the trainer
trains, within a staleness bound.

    evalgym train grpo max_staleness=1 engines=2 backend=vllm        # two vLLM Ray actors, one step stale
    evalgym train grpo max_staleness=0 engine_url=http://127.0.0.1:8000   # an OpenAI-compatible vLLM server

``max_staleness: k`` (RLConfig) switches the RL loop (``rl.train_rl``) from sampling in the trainer's
process to :class:`AsyncRollouts`:

- engines: ``engines`` Ray actors, each an ``hf`` or ``vllm`` policy of ``cfg.model`` (``backend``), or one
  OpenAI-compatible server (``engine_url``; weights go through its ``load_weights``: a vLLM server in dev
  mode). Generation chunks go round-robin to the actors; grading runs in the trainer's process (the env's
  own verifier, in its worker processes) as each chunk comes back.
- a producer thread prepares the batch of step ``s`` (its problems are a pure function of seed and step)
  once the engines may hold weights at least ``s − k`` steps old: it pushes the newest published weights
  (only between batches, so generation stops for the push and nothing else), generates, grades, and puts the
  finished groups on a queue. The trainer takes step ``s``'s groups from the queue, trains, and publishes
  its new weights (a CPU snapshot; a LoRA run publishes only the adapter: megabytes instead of the model).
- ``k = 0`` waits for every step's weights before sampling: the synchronous run, bit for bit the in-process
  run when the engines compute as the trainer does (an ``hf`` engine, same threads). ``k ≥ 1`` overlaps
  generation with training.
- each group records the weights version it was sampled with (the engine reports it with the tokens):
  ``staleness_mean`` / ``staleness_max`` per step are the consumer's step minus that version, measured.
- stale samples are corrected on the log-probs the engine recorded (decoupled PPO): the ratio is taken
  against the trainer's current weights before the update (the proximal policy) and each token is weighted
  by ``min(π_proximal / π_behaviour, tis_cap)`` (``tis_cap`` default 2 when ``k ≥ 1``); ``stale_correction:
  false`` treats them as on-policy.

Logged per step: ``staleness_mean``, ``staleness_max``, ``wait_s`` (the trainer waiting for its batch),
``publish_s`` (snapshotting the weights), ``engine_sync_s`` (the last push into the engines),
``generate_s`` (the batch's generation and grading in the producer).

CPU placement: ``EVALGYM_ENGINE_CPUS=1,2`` pins every engine actor to those cores (``sched_setaffinity``);
``engine_threads`` sets its torch threads (default: the trainer's). One trainer process only: with several
(DDP/FSDP) the engines would need one producer per process; refused up front.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from evalgym.errors import EvalgymError

ADAPTER_DIRS_KEPT = 3


class EngineActor:
    """A rollout engine in its own process (a Ray actor): a policy plus the version of its weights."""

    def __init__(self, backend: str, model: str, lora: dict[str, Any] | None, threads: int | None,
                 logprobs: str = "model"):
        cpus = os.environ.get("EVALGYM_ENGINE_CPUS")
        if cpus:
            os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
        if threads:
            torch.set_num_threads(int(threads))
        from evalgym.policies.base import make_policy

        self.backend, self.version, self.peft = backend, -1, None
        if backend == "vllm":
            self.policy = make_policy("vllm", model, enable_lora=bool(lora), max_lora_rank=(lora or {}).get("r"),
                                      logprobs=logprobs)
        else:
            self.policy = make_policy("hf", model, dtype="float32")
            if lora:   # the same adapter layout as the trainer's: pushes carry only the adapter tensors
                from evalgym.trainers.config import LoRAConfig
                from evalgym.trainers.lora import apply_lora

                self.peft = apply_lora(self.policy.model, LoRAConfig(**lora))
                self.policy.model = self.peft.get_base_model().eval()

    def ready(self) -> bool:
        return True

    def generate(self, prompts: list[Any], sampling: Any, keys: list[int]) -> tuple[list[Any], int]:
        return self.policy.generate(prompts, sampling, keys=keys), self.version

    def push(self, kind: str, payload: Any, version: int) -> float:
        t0 = time.perf_counter()
        if kind == "adapter_dir":
            self.policy.load_adapter(payload)
        elif kind == "adapter":
            from evalgym.trainers.lora import set_adapter_state

            set_adapter_state(self.peft, payload)
        else:
            self.policy.load_weights(payload)
        self.version = version
        return time.perf_counter() - t0


class RayEngines:
    """``n`` :class:`EngineActor` s; pushes go to all of them, generation chunks round-robin."""

    def __init__(self, cfg: Any, threads: int | None):
        try:
            import ray
        except ImportError as e:
            raise EvalgymError("max_staleness needs ray: pip install 'evalgym[ray]'") from e
        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            from evalgym.rollouts_ray import start_ray

            start_ray(runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in (
                str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")) if p)}})
        from evalgym.models import resolve_model

        actor = ray.remote(EngineActor).options(num_cpus=0)
        lora = cfg.lora.model_dump() if cfg.lora else None
        model = resolve_model(cfg.model)   # an adapter checkpoint: the merged model the trainer starts from
        from evalgym.trainers.rl import sampling_of

        logprobs = sampling_of(cfg).logprobs
        self.actors = [actor.remote(cfg.backend, model, lora, threads, logprobs) for _ in range(cfg.engines)]
        ray.get([a.ready.remote() for a in self.actors])   # model-loading errors surface here
        self.kind = ("adapter_dir" if cfg.backend == "vllm" else "adapter") if cfg.lora else "full"
        self._next = 0

    def push(self, payload: Any, version: int) -> float:
        ref = self._ray.put(payload) if self.kind != "adapter_dir" else payload
        return max(self._ray.get([a.push.remote(self.kind, ref, version) for a in self.actors]))

    def submit(self, prompts: list[Any], sampling: Any, keys: list[int]) -> Any:
        a = self.actors[self._next % len(self.actors)]
        self._next += 1
        return a.generate.remote(prompts, sampling, keys)

    def result(self, handle: Any) -> tuple[list[Any], int]:
        return self._ray.get(handle)

    def close(self) -> None:
        for a in self.actors:
            try:
                self._ray.kill(a)
            except Exception:  # noqa: BLE001 - an actor that already died is closed
                pass
        self.actors = []
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()


class ServerEngine:
    """An OpenAI-compatible server as the engine (``engine_url``); its weights are replaced through the
    policy's ``load_weights`` (a vLLM server started with ``VLLM_SERVER_DEV_MODE=1``); a LoRA run pushes its
    merged weights (the server takes no adapter from here). Its log-probs are taken to be of the kind the run
    trains (``tempered_logprobs``: start vLLM with ``--logprobs-mode processed_logprobs``, else the default
    ``raw_logprobs``); they differ only when the sampling temperature is not 1 (or top-p < 1)."""

    kind = "full"

    def __init__(self, cfg: Any):
        from evalgym.policies.openai import OpenAIPolicy

        from evalgym.trainers.rl import sampling_of

        self.policy = OpenAIPolicy(cfg.model, base_url=cfg.engine_url, logprobs=sampling_of(cfg).logprobs)
        self.version = -1

    def push(self, payload: Any, version: int) -> float:
        t0 = time.perf_counter()
        self.policy.load_weights(payload)
        self.version = version
        return time.perf_counter() - t0

    def submit(self, prompts: list[Any], sampling: Any, keys: list[int]) -> Any:
        version = self.version
        return lambda: (self.policy.generate(prompts, sampling, keys=keys), version)

    @staticmethod
    def result(handle: Any) -> tuple[list[Any], int]:
        return handle()

    def close(self) -> None:
        self.policy.close()


class _CollectEngine:
    """The engine interface ``rollouts.collect_many`` drives (generate remotely, grade here), recording the
    weights version of every chunk by the problem positions it holds."""

    def __init__(self, engines: Any, verify_pool: ThreadPoolExecutor):
        self.engines, self.pool = engines, verify_pool
        self.policy_name = "async-engine"
        self.versions: dict[int, int] = {}     # problem position -> oldest version among its samples
        self._keys: dict[int, list[int]] = {}

    def submit_generate(self, prompts: list[Any], sampling: Any, keys: list[int]) -> Any:
        h = self.engines.submit(prompts, sampling, keys)
        self._keys[id(h)] = keys
        return h

    def submit_verify(self, env: Any, problems: list[Any], responses: list[str]) -> Any:
        def run() -> tuple[list[Any], float]:
            t0 = time.perf_counter()
            return env.verifier.verify_batch(problems, responses), time.perf_counter() - t0
        return self.pool.submit(run)

    def warm(self, verifier: Any) -> None:
        warm = getattr(getattr(verifier, "pool", None), "warm", None)
        if warm is not None:
            warm()

    def result(self, handle: Any) -> Any:
        if hasattr(handle, "result") and not callable(handle):
            return handle.result()
        comps, version = self.engines.result(handle)
        for key in self._keys.pop(id(handle), []):
            pos = key // 1_000_003   # a first turn's key is position * 1_000_003 + sample (collect_many)
            self.versions[pos] = min(self.versions.get(pos, version), version)
        return comps

    def close(self) -> None:   # the pool and the engines outlive one batch
        pass


class AsyncRollouts:
    """The producer thread, its queue and the engines of one asynchronous RL run."""

    def __init__(self, cfg: Any, trainer: Any, envs: dict[str, Any], sizes: dict[str, int], algorithm: Any):
        if trainer.world > 1:
            raise EvalgymError(f"{algorithm.name}.max_staleness: asynchronous rollouts run with one trainer process "
                               f"(this launch has {trainer.world}); use max_staleness: null under DDP/FSDP")
        if algorithm.name == "distill" and getattr(algorithm.cfg, "mode", "on_policy") != "on_policy":
            raise EvalgymError("distill.max_staleness: off-policy distillation samples the teachers, not the "
                               "student; asynchronous rollouts apply to on_policy mode")
        self.cfg, self.trainer, self.envs, self.sizes = cfg, trainer, envs, sizes
        threads = cfg.engine_threads or torch.get_num_threads()
        self.engines: Any = ServerEngine(cfg) if cfg.engine_url else RayEngines(cfg, threads)
        self.verify_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="evalgym-async-verify")
        self.queue: queue.Queue = queue.Queue()
        self.cond = threading.Condition()
        self.published: tuple[int, Any] | None = None     # (version, payload) the trainer offers
        self.engine_version = -1
        self.last_push_s = 0.0
        self.error: BaseException | None = None
        self.stopping = False
        self.publish(trainer.step)
        self.thread = threading.Thread(target=self._produce, name="evalgym-rollouts", daemon=True)
        self.thread.start()

    # -- trainer side --------------------------------------------------------------------------------

    def publish(self, version: int) -> float:
        """Offer the trainer's current weights as ``version`` (the number of steps trained)."""
        t0 = time.perf_counter()
        payload = self._snapshot(version)
        with self.cond:
            self.published = (version, payload)
            self.cond.notify_all()
        return time.perf_counter() - t0

    def _snapshot(self, version: int) -> Any:
        t = self.trainer
        kind = self.engines.kind
        if kind == "adapter":
            from evalgym.trainers.lora import adapter_state
            return adapter_state(t.peft)
        if kind == "adapter_dir":
            from evalgym.trainers.lora import save_engine_adapter
            return save_engine_adapter(t.peft, t.run_dir / ".engine_adapters", version, ADAPTER_DIRS_KEPT)
        if t.peft is not None:
            from evalgym.trainers.lora import merged_state_dict
            return merged_state_dict(t.peft)
        return {k: v.detach().to("cpu", copy=True) for k, v in t.model.state_dict().items()}

    def take(self, step: int) -> tuple[Any, dict[str, float]]:
        """Step ``step``'s rollout (blocking) and its asynchrony metrics."""
        t0 = time.perf_counter()
        while True:
            try:
                item = self.queue.get(timeout=1.0)
                break
            except queue.Empty:
                if self.error is not None:
                    raise self.error
                if not self.thread.is_alive():
                    raise EvalgymError("asynchronous rollouts: the producer thread stopped without a batch")
        if isinstance(item, BaseException):
            raise item
        s, rollout, versions, gen_s = item
        assert s == step, (s, step)
        stale = [step - versions.get(pos, step) for pos in range(len(rollout.groups))]
        stats = {"staleness_mean": sum(stale) / max(len(stale), 1), "staleness_max": float(max(stale, default=0)),
                 "wait_s": time.perf_counter() - t0, "engine_sync_s": self.last_push_s, "generate_s": gen_s}
        return rollout, stats

    def close(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        self.thread.join(timeout=60)
        self.verify_pool.shutdown(wait=False)
        self.engines.close()
        shutil.rmtree(self.trainer.run_dir / ".engine_adapters", ignore_errors=True)

    # -- producer side -------------------------------------------------------------------------------

    def _produce(self) -> None:
        from evalgym.rollouts import collect_many
        from evalgym.trainers.rl import pick_problems, sampling_of

        cfg = self.cfg
        try:
            for s in range(self.trainer.step, cfg.steps):
                with self.cond:   # the engines may sample batch s with weights no older than s - k
                    self.cond.wait_for(lambda: self.stopping or (self.published is not None
                                                                 and self.published[0] >= s - cfg.max_staleness))
                    if self.stopping:
                        return
                    version, payload = self.published
                if version > self.engine_version:
                    self.last_push_s = self.engines.push(payload, version)
                    self.engine_version = version
                items = [(self.envs[n], i) for n, i in pick_problems(cfg, self.sizes, s)]
                engine = _CollectEngine(self.engines, self.verify_pool)
                per_engine = -(-len(items) // max(len(getattr(self.engines, "actors", [None])), 1))
                t0 = time.perf_counter()
                rollout = collect_many(None, items, n=cfg.group_size, sampling=sampling_of(cfg),
                                       seed=cfg.seed * 1_000_003 + s, policy_step=version, engine=engine,
                                       batch_prompts=per_engine)
                self.queue.put((s, rollout, engine.versions, time.perf_counter() - t0))
        except BaseException as e:  # noqa: BLE001 - handed to the trainer, which raises it
            self.error = e
            self.queue.put(e)
