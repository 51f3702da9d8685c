"""evalgym inside lm-evaluation-harness: any evalgym policy as an lm-eval ``LM``, any registered env as an
lm-eval task graded by the env's own verifier, and lm-eval's standard tasks on local data.

    import lm_eval
    from evalgym.benchmarks.lmeval import PolicyLM, build_task
    from evalgym.policies.base import make_policy

    lm = PolicyLM(make_policy("hf", "tiny"))
    task = build_task("evalgym_arithmetic")            # or "evalgym_gsm8k-v0", "gsm8k", "ifeval", ...
    out = lm_eval.simple_evaluate(model=lm, tasks=[task], limit=32, apply_chat_template=lm.chat)
    out["results"]["evalgym_arithmetic"]["acc,none"]

Env tasks (``evalgym_<env name>``) for use inside lm-eval: the docs are the problems the evaluation driver
(``evalgym.evaluate``) picks (the env's evaluation split: ``test`` of a dataset env, ``eval`` of a
procedural one, whose problems training never draws; the first 500 distinct ones of a procedural split);
the prompt is the env's chat, rendered by the model's chat template through
:meth:`PolicyLM.apply_chat_template`, the same tokens a rollout feeds the policy; ``process_results``
grades with the driver's grading (the env's verifier, thinking cut, ``evalgym.evaluate.doc_metrics``),
so the training reward, ``evalgym eval`` and this task are one piece of code. Only the first turn of a
multi-turn env is scored here (lm-eval generates once per doc; ``evalgym eval`` plays every turn).
Metrics: see ``evalgym.evaluate`` (``acc``/``reward``, or ``pass@1``/``pass@k``/``mean@k`` with
``num_samples=k``, ``grader_errors``, the verifier's own).

Standard tasks: a name from lm-eval's registry. Those whose data is staged locally (GSM8K, IFEval)
read it from ``$EVALGYM_DATA_DIR`` instead of the hub.

Task names (:func:`resolve_task`): ``evalgym/gsm8k-v0``, ``gsm8k-v0`` and ``evalgym_gsm8k`` are the env
task; a bare name is lm-eval's task when lm-eval has one (``gsm8k``, ``arithmetic``), else the env of
that name (``countdown-gen``); anything else is an error naming it, the envs and where lm-eval's are.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from lm_eval.api.model import LM

from evalgym.errors import EvalgymError
from evalgym.evaluate import THINK_TAGS, doc_metrics, eval_env, eval_indices, metric_names, strip_thinking
from evalgym.policies.base import Policy, SamplingParams, encode

log = logging.getLogger(__name__)

ENV_PREFIX = "evalgym_"
# lm-eval dataset_path -> split -> file under the data folder (shared/data layout)
LOCAL_DATA = {
    "openai/gsm8k": {"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"},
    "gsm8k": {"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"},
    "google/IFEval": {"train": "ifeval/input_data.jsonl"},
}
# task name -> its folder under lm_eval/tasks: indexing only that folder takes ~1 s, the whole
# registry (14k tasks) ~30 s
TASK_DIRS = {"gsm8k": "gsm8k", "gsm8k_cot": "gsm8k", "gsm8k_cot_zeroshot": "gsm8k", "gsm8k_cot_llama": "gsm8k",
             "gsm8k_cot_self_consistency": "gsm8k", "ifeval": "ifeval"}


# -- the model side --------------------------------------------------------------------------------


def stable_key(text: str) -> int:
    """A prompt's sampling key: the same context gets the same seeds in every run and process."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 2


class PolicyLM(LM):
    """An lm-eval ``LM`` over an evalgym policy (hf, vllm or openai backend).

    ``generate_until`` groups identical requests (a task's ``repeats``) into one ``generate`` call with
    ``n`` samples whose seeds come from (seed, context); contexts longer than the model's window lose
    their oldest tokens, as in lm-eval's own HF model; with ``think`` tags a thinking section is cut from
    each response before the task's filters read it. ``loglikelihood`` scores continuations with the
    policy (HF: one forward pass that also tells whether the continuation is the greedy one).
    """

    def __init__(self, policy: Policy, *, seed: int = 0, max_gen_toks: int = 256, chunk: int = 64,
                 progress: bool = False, think: tuple[str, str] | None = None):
        super().__init__()
        self.policy = policy
        self.think = think
        self.raw_outputs: dict[str, list[str]] | None = None   # context -> responses before thinking is cut
        self.tokenizer = policy.tokenizer
        self.seed = int(seed)
        self.max_gen_toks = int(max_gen_toks)
        self.chunk = int(chunk)
        self.progress = progress
        self._warned_truncation = False

    @property
    def chat(self) -> bool:
        """Whether the model has a chat template (then prompts go through it)."""
        return bool(getattr(self.tokenizer, "chat_template", None))

    @property
    def max_length(self) -> int:
        limit = getattr(self.policy, "max_model_len", None)
        if limit is None:
            model = getattr(self.policy, "model", None)
            limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        return int(limit or 2048)

    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.tokenizer, "name_or_path", self.policy.name)).replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return getattr(self.tokenizer, "chat_template", None) or ""

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(chat_history, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt,
                                                  continue_final_message=not add_generation_prompt)

    def _ids(self, text: str) -> list[int]:
        return encode(self.tokenizer, text) if text else []

    def _fit(self, ids: list[int], room: int) -> list[int]:
        keep = max(1, self.max_length - room)
        if len(ids) > keep:
            if not self._warned_truncation:
                log.warning("context of %d tokens cut to its last %d to fit the model's %d", len(ids), keep,
                            self.max_length)
                self._warned_truncation = True
            return ids[-keep:]
        return ids

    def sampling(self, gen_kwargs: dict[str, Any], n: int) -> SamplingParams:
        """lm-eval generation kwargs as evalgym SamplingParams (greedy unless do_sample/temperature say so)."""
        kw = dict(gen_kwargs)
        until = kw.pop("until", None) or []
        until = [until] if isinstance(until, str) else list(until)
        temperature = float(kw.pop("temperature", 0.0) or 0.0)
        if not kw.pop("do_sample", temperature > 0):
            temperature = 0.0
        elif temperature == 0.0:
            temperature = 1.0
        return SamplingParams(n=n, temperature=temperature, top_p=float(kw.pop("top_p", 1.0) or 1.0),
                              max_tokens=int(kw.pop("max_gen_toks", self.max_gen_toks)),
                              stop=tuple(s for s in until if s), seed=self.seed)

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        groups: dict[tuple[str, str], list[int]] = {}
        for i, req in enumerate(requests):
            context, gen_kwargs = req.args[0], req.args[1]
            groups.setdefault((context, json.dumps(gen_kwargs, sort_keys=True, default=str)), []).append(i)
        by_call: dict[tuple[str, int], list[tuple[str, str]]] = {}
        for (context, gk), positions in groups.items():
            by_call.setdefault((gk, len(positions)), []).append((context, gk))
        out: list[str] = [""] * len(requests)
        bar = None
        if self.progress and not disable_tqdm:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(requests), desc="generate", unit="req", dynamic_ncols=True)
        for (gk, n), keys in by_call.items():
            sp = self.sampling(json.loads(gk), n)
            for lo in range(0, len(keys), self.chunk):
                part = keys[lo:lo + self.chunk]
                prompts = [self._fit(self._ids(ctx), sp.max_tokens) for ctx, _ in part]
                outs = self.policy.generate(prompts, sp, keys=[stable_key(ctx) for ctx, _ in part])
                for key, comps in zip(part, outs):
                    for pos, comp in zip(groups[key], comps):
                        if self.raw_outputs is not None:
                            self.raw_outputs.setdefault(key[0], []).append(comp.text)
                        out[pos] = strip_thinking(comp.text, self.think)
                        self.cache_hook.add_partial("generate_until", requests[pos].args, out[pos])
                if bar is not None:
                    bar.update(sum(len(groups[k]) for k in part))
        if bar is not None:
            bar.close()
        return out

    # -- likelihoods ------------------------------------------------------------------------------

    def _prefix_id(self) -> int:
        tok = self.tokenizer
        for tid in (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id):
            if tid is not None:
                return int(tid)
        raise EvalgymError(f"{self.policy.name}: the tokenizer has no BOS/EOS token to score an empty context with")

    def _split(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Token ids of context and continuation as lm-eval's HF model cuts them: the whole text is
        tokenized once and the continuation is what follows the context's tokens."""
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        if not context:
            return [self._prefix_id()], self._ids(continuation)
        whole, ctx = self._ids(context + continuation), self._ids(context)
        return ctx, whole[len(ctx):]

    def _score(self, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        pairs = [(self._fit(c, len(t)), t) for c, t in pairs]
        model = getattr(self.policy, "model", None)
        if model is not None and hasattr(model, "forward"):
            return [self._score_hf(model, c, t) for c, t in pairs]
        lps = self.policy.score_batch([(c, t) for c, t in pairs])
        return [(float(sum(lp)), False) for lp in lps]  # greedy-ness is not exposed by this backend

    def _score_hf(self, model: Any, ctx: list[int], cont: list[int]) -> tuple[float, bool]:
        import torch

        with torch.inference_mode():
            ids = torch.tensor([ctx + cont], device=getattr(self.policy, "device", "cpu"))
            logits = model(input_ids=ids).logits[0, len(ctx) - 1:-1].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            target = torch.tensor(cont, device=logprobs.device)
            total = float(logprobs.gather(1, target[:, None]).sum())
            return total, bool((logprobs.argmax(-1) == target).all())

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        results = self._score([self._split(*req.args[:2]) for req in requests])
        for req, res in zip(requests, results):
            self.cache_hook.add_partial("loglikelihood", req.args, res)
        return results

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        out = []
        for req in requests:
            windows = [make_disjoint_window(w) for w in get_rolling_token_windows(
                token_list=self._ids(req.args[0]), prefix_token=self._prefix_id(),
                max_seq_len=self.max_length, context_len=1)]
            total = sum(lp for lp, _ in self._score([(list(c), list(t)) for c, t in windows]))
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
            out.append(total)
        return out


# -- env tasks -------------------------------------------------------------------------------------


def _flatten_mean(items: list[list[bool]]) -> float:
    flat = [x for xs in items for x in xs]
    return sum(flat) / len(flat) if flat else 0.0


def env_task_name(env: str) -> str:
    """``evalgym_<env name>`` for an env id, short name or task name."""
    import evalgym  # noqa: F401  (registers the envs)
    from evalgym.envs.registry import CATALOG, resolve_id

    return ENV_PREFIX + CATALOG[resolve_id(env.removeprefix(ENV_PREFIX))].name


def build_env_task(env: str, *, num_samples: int = 1, temperature: float | None = None, top_p: float = 1.0,
                   max_tokens: int = 256, split: str | None = None, num_docs: int | None = None,
                   env_kwargs: dict[str, Any] | None = None, think: tuple[str, str] | None = THINK_TAGS) -> Any:
    """An lm-eval ``ConfigurableTask`` whose docs are ``env``'s evaluation problems (``split`` None: its
    evaluation split) and whose metrics are the driver's grading. ``temperature`` defaults to 0 (greedy)
    for one sample and 1.0 for several."""
    import datasets
    from lm_eval.api.task import ConfigurableTask

    if num_samples < 1:
        raise EvalgymError(f"num_samples must be >= 1, got {num_samples}")
    text_env, split_name = eval_env(env.removeprefix(ENV_PREFIX), split=split, env_kwargs=env_kwargs, think=think)
    source, verifier, info = text_env.source, text_env.verifier, text_env.source.info
    docs = []
    for i in eval_indices(text_env, num_docs):
        p = source.problem(i)
        roles = [m.role for m in p.messages]
        if roles not in (["user"], ["system", "user"]):
            raise EvalgymError(f"{info.id}: problem {p.id} has messages {roles}; env tasks take a user turn "
                               "and an optional system turn")
        docs.append({"index": i, "prompt": p.prompt_text,
                     "system": p.messages[0].content if roles[0] == "system" else ""})
    extra = dict(getattr(verifier, "metrics", {}) or {})
    warm = getattr(getattr(verifier, "pool", None), "warm", None)
    if warm is not None:
        warm()  # start the graders now, not while the engine generates (they compete for the cores)

    def process_results(doc: dict[str, Any], results: list[Any]) -> dict[str, Any]:
        responses = results[0] if isinstance(results[0], list) else results
        problem = source.problem(int(doc["index"]))
        return doc_metrics(verifier.verify_batch([problem] * len(responses), list(responses)), extra)

    temp = (0.0 if num_samples == 1 else 1.0) if temperature is None else float(temperature)
    metric_list = [{"metric": m, "aggregation": "mean" if how == "mean" else _flatten_mean,
                    "higher_is_better": m != "grader_errors"} for m, how in metric_names(num_samples, extra)]
    config = {
        "task": ENV_PREFIX + info.name,
        "custom_dataset": lambda **_: datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)}),
        "test_split": "test",
        "doc_to_text": "prompt",
        "doc_to_target": "",
        "description": "system",
        "output_type": "generate_until",
        "generation_kwargs": {"until": [], "max_gen_toks": int(max_tokens), "do_sample": temp > 0,
                              "temperature": temp, "top_p": float(top_p)},
        "repeats": num_samples,
        "num_fewshot": 0,
        "filter_list": [{"name": "none", "filter": [{"function": "take_first_k", "k": num_samples}]}],
        "process_results": process_results,
        "metric_list": metric_list,
        "metadata": {"version": info.version, "env_id": info.id, "verifier": verifier.name,
                     "verifier_version": verifier.version, "docs": len(docs), "split": split_name},
    }
    return ConfigurableTask(config=config)


# -- standard lm-eval tasks ------------------------------------------------------------------------


@lru_cache(maxsize=8)
def task_manager(include: tuple[str, ...] = (), defaults: bool = True) -> Any:
    from lm_eval.tasks import TaskManager

    return TaskManager(include_defaults=defaults, include_path=list(include) or None)


def _manager_for(name: str, include_path: Sequence[str] = ()) -> Any:
    import lm_eval.tasks

    folder = TASK_DIRS.get(name)
    if folder and not include_path:
        return task_manager((str(Path(lm_eval.tasks.__file__).parent / folder),), False)
    return task_manager(tuple(str(p) for p in include_path), True)


def local_data_overrides(config: dict[str, Any], data_dir: str | None = None) -> dict[str, Any]:
    """Config overrides that point a task at the local copy of its dataset (none if not staged)."""
    from evalgym.data import data_dir as resolve_data_dir

    root = resolve_data_dir(data_dir)
    files = LOCAL_DATA.get(str(config.get("dataset_path")))
    if root is None or files is None:
        return {}
    present = {split: str(root / rel) for split, rel in files.items() if (root / rel).is_file()}
    if len(present) != len(files):
        return {}
    return {"dataset_path": "json", "dataset_name": None, "dataset_kwargs": {"data_files": present}}


def build_standard_task(name: str, *, data_dir: str | None = None, include_path: Sequence[str] = ()) -> list[Any]:
    """lm-eval's task (or group/tag: all its tasks) called ``name``, on local data where staged."""
    from lm_eval.tasks._index import Kind
    from lm_eval.tasks._yaml_loader import load_yaml

    tm = _manager_for(name, include_path)
    entry = tm.task_index.get(name)
    if entry is None:
        raise EvalgymError(_unknown_task(name))
    spec: Any = name
    if entry.kind == Kind.TASK and entry.yaml_path is not None:
        config = load_yaml(entry.yaml_path, resolve_func=True)
        overrides = local_data_overrides(config, data_dir)
        if overrides:
            config = {**config, **overrides}
            config["metadata"] = {**(config.get("metadata") or {}), "data": overrides["dataset_kwargs"]["data_files"]}
            spec = config
    try:
        return list(tm.load([spec])["tasks"].values())
    except (ConnectionError, OSError, ValueError) as exc:
        raise EvalgymError(f"task {name}: could not load its data ({type(exc).__name__}: {str(exc)[:200]}); "
                           f"staged locally under $EVALGYM_DATA_DIR are: {sorted(LOCAL_DATA)}") from None


def build_task(name: str, *, data_dir: str | None = None, include_path: Sequence[str] = (), **env_options: Any) -> list[Any]:
    """The lm-eval task objects for one ``--tasks`` entry: an env task or a standard one."""
    if data_dir:
        os.environ.setdefault("EVALGYM_DATA_DIR", str(data_dir))
    ref = resolve_task(name, include_path)
    if ref.kind == "env":
        return [build_env_task(ref.env_id or name, **env_options)]
    return build_standard_task(name, data_dir=data_dir, include_path=include_path)


@dataclass(frozen=True)
class TaskRef:
    """A ``--tasks`` entry resolved: ``kind`` "env" (``env_id`` set; ``name`` is ``evalgym_<env>``) or
    "lmeval" (``name`` as lm-eval knows it)."""

    kind: str
    name: str
    env_id: str | None = None


_VERSIONED = re.compile(r"-v\d+$")


def resolve_task(name: str, include_path: Sequence[str] = ()) -> TaskRef:
    """What a ``--tasks`` entry names (see the module docstring)."""
    import evalgym  # noqa: F401  (registers the envs)
    from evalgym.envs.registry import CATALOG, resolve_id

    name = name.strip()
    if name.startswith(ENV_PREFIX) or "/" in name or _VERSIONED.search(name):
        try:
            env_id = resolve_id(name.removeprefix(ENV_PREFIX))
        except EvalgymError:
            raise EvalgymError(_unknown_task(name)) from None
        return TaskRef("env", ENV_PREFIX + CATALOG[env_id].name, env_id)
    if name in TASK_DIRS or name in _manager_for(name, include_path).task_index:
        return TaskRef("lmeval", name)
    try:
        env_id = resolve_id(name)
    except EvalgymError:
        raise EvalgymError(_unknown_task(name)) from None
    return TaskRef("env", ENV_PREFIX + CATALOG[env_id].name, env_id)


def _unknown_task(name: str) -> str:
    from evalgym.envs.registry import CATALOG

    envs = sorted({info.name for info in CATALOG.values()})
    close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX).split("/")[-1], envs, n=3)
    hint = f"; did you mean {', '.join(ENV_PREFIX + c for c in close)}?" if close else ""
    return (f"unknown task {name!r}: not an env task (evalgym_<env>, <env>-v<N> or evalgym/<env>-v<N>; envs: "
            f"{', '.join(envs)}) nor an lm-eval task (`lm-eval ls tasks` lists them){hint}")


def task_names(spec: str | Sequence[str], include_path: Sequence[str] = ()) -> list[TaskRef]:
    """The resolved tasks of comma-separated ``--tasks`` (or a list), duplicates dropped."""
    names = [t.strip() for t in (spec.split(",") if isinstance(spec, str) else spec) if t.strip()]
    if not names:
        raise EvalgymError("--tasks: give at least one task")
    refs = [resolve_task(t, include_path) for t in names]
    return list(dict.fromkeys(refs))
