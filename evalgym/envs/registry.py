"""Registering envs: one line per env, a versioned Gymnasium id, and a table ``evalgym envs list`` reads.

    register("gsm8k", 0, domain="math", verifier="math", source=gsm8k_source, splits=("train", "test"),
             eval_split="test")
    gymnasium.make("evalgym/gsm8k-v0", split="train", data_dir="../shared/data")

Splits: an env names its splits, the one evaluation uses (``eval_split``) and the one training uses
(``train_split``: the default of ``gymnasium.make``; None when the env has no training split, e.g.
HumanEval, whose only split is its test set). :func:`describe` (``evalgym envs info``) reports them with
the size of the problem space for given knobs.

Third-party packages register the same way from an entry point in the ``evalgym.envs`` group, a
function that calls :func:`register`; ``import evalgym`` loads them all:

    [project.entry-points."evalgym.envs"]
    mypkg = "mypkg.envs:register_envs"
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import gymnasium

from evalgym.envs.base import ProblemSource, TextEnv, Verifier
from evalgym.errors import EvalgymError

log = logging.getLogger(__name__)

SourceFactory = Callable[..., ProblemSource]  # (info: EnvInfo, **kwargs) -> ProblemSource


@dataclass(frozen=True)
class EnvInfo:
    """What the registry knows about an env without building it."""

    id: str
    name: str
    version: int
    domain: str
    verifier: str
    description: str
    source: SourceFactory = field(repr=False)
    verifier_factory: Callable[[], Verifier] = field(repr=False)
    max_turns: int = 1
    defaults: dict[str, Any] = field(default_factory=dict)
    splits: tuple[str, ...] = ()           # () when the env does not say (third-party envs)
    eval_split: str | None = None          # the split evaluation uses
    train_split: str | None = None         # the split training uses (the default); None: none to train on
    env_class: Any = None                  # a TextEnv subclass to build (agentic envs); None: TextEnv


CATALOG: dict[str, EnvInfo] = {}
VERIFIERS: dict[str, Callable[[], Verifier]] = {}


def register_verifier(name: str, factory: Callable[[], Verifier]) -> None:
    VERIFIERS[name] = factory


def register(
    name: str,
    version: int,
    *,
    domain: str,
    verifier: str,
    source: SourceFactory,
    description: str = "",
    max_turns: int = 1,
    namespace: str = "evalgym",
    splits: tuple[str, ...] = (),
    eval_split: str | None = None,
    train_split: str | None = None,
    env_class: Any = None,
    **defaults: Any,
) -> str:
    """Register ``{namespace}/{name}-v{version}``; ``defaults`` are the source's default kwargs."""
    env_id = f"{namespace}/{name}-v{version}"
    if verifier not in VERIFIERS:
        raise EvalgymError(f"env {env_id}: unknown verifier {verifier!r}; registered: {sorted(VERIFIERS)}")
    for what, split in (("eval_split", eval_split), ("train_split", train_split)):
        if split is not None and splits and split not in splits:
            raise EvalgymError(f"env {env_id}: {what} {split!r} is not one of its splits {list(splits)}")
    info = EnvInfo(env_id, name, version, domain, verifier, description, source, VERIFIERS[verifier],
                   max_turns, dict(defaults), tuple(splits), eval_split, train_split, env_class)
    CATALOG[env_id] = info
    if env_id in gymnasium.registry:
        del gymnasium.registry[env_id]
    gymnasium.register(id=env_id, entry_point=make_text_env, kwargs={"env_id": env_id}, disable_env_checker=False)
    return env_id


def make_text_env(env_id: str, *, max_turns: int | None = None, render_mode: str | None = None,
                  verifier: Verifier | None = None, think: Any = "default", **source_kwargs: Any) -> TextEnv:
    """The Gymnasium entry point of every registered env. ``think``: the reasoning-section tags its
    verifier cuts before grading (``"reasoning"``, ``("<r>", "</r>")``, None: keep all; default: the
    verifier's own, ``<think>…</think>`` for math, countdown and ifeval)."""
    info = CATALOG.get(env_id)
    if info is None:
        raise EvalgymError(f"unknown env {env_id!r}; `evalgym envs list` shows the registered ones")
    kwargs = {**info.defaults, **source_kwargs}
    if "data_dir" not in inspect.signature(info.source).parameters:
        kwargs.pop("data_dir", None)  # generated envs need no data; callers may pass it to every env
    source = info.source(info, **kwargs)
    verifier = verifier or info.verifier_factory()
    if not (isinstance(think, str) and think == "default"):
        if not hasattr(verifier, "think"):
            raise EvalgymError(f"{env_id}: think: its verifier {info.verifier!r} reads the whole response")
        from evalgym.verifiers.math_extract import check_think

        verifier.think = check_think(think)
    env_class = info.env_class or TextEnv
    return env_class(source, verifier, max_turns=max_turns or info.max_turns, render_mode=render_mode)


def describe(name: str, data_dir: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """What ``evalgym envs info NAME knob=value ...`` prints: the env, its knobs, its splits and how many
    distinct problems its space holds for those knobs (``space``: None when unbounded or unknown) and each
    split (``split_sizes``; ``exact``: counted by listing, else estimated)."""
    info = CATALOG[resolve_id(name)]
    split = kwargs.pop("split", None)
    if split is not None and info.splits and split not in info.splits:
        raise EvalgymError(f"{info.id}: unknown split {split!r}; its splits: {list(info.splits)}")
    base = make_text_env(info.id, data_dir=data_dir, **kwargs).source
    out: dict[str, Any] = {"id": info.id, "name": info.name, "version": info.version, "domain": info.domain,
                           "verifier": info.verifier, "max_turns": info.max_turns, "description": info.description,
                           "knobs": {**info.defaults, **kwargs}, "splits": list(info.splits),
                           "train_split": info.train_split, "eval_split": info.eval_split}
    if hasattr(base, "space"):                        # procedural: one space, partitioned by content hash
        sp = base.space()
        out.update(space=sp.space, split_sizes=sp.splits, exact=sp.exact)
        return out
    sizes: dict[str, int | None] = {}
    for split in info.splits:
        try:
            sizes[split] = make_text_env(info.id, data_dir=data_dir, split=split, **kwargs).source.size
        except EvalgymError:
            sizes[split] = None
    if not sizes:
        sizes = {getattr(base, "split", "default"): base.size}
    known = [n for n in sizes.values() if n is not None]
    out.update(space=sum(known) if len(known) == len(sizes) else None, split_sizes=sizes, exact=True)
    return out


def resolve_id(name: str) -> str:
    """Accept ``evalgym/gsm8k-v0``, ``gsm8k-v0`` or ``gsm8k`` (latest version)."""
    if name in CATALOG:
        return name
    if f"evalgym/{name}" in CATALOG:
        return f"evalgym/{name}"
    versions = [info for info in CATALOG.values() if info.name == name or info.id.split("/")[-1].rsplit("-v", 1)[0] == name]
    if versions:
        return max(versions, key=lambda i: i.version).id
    names = sorted({info.name for info in CATALOG.values()})
    raise EvalgymError(f"unknown env {name!r}; registered: {', '.join(names)} (`evalgym envs list`)")


_PLUGINS_LOADED = False


def load_plugins() -> list[str]:
    """Call every ``evalgym.envs`` entry point once; returns the names loaded. A broken plugin is
    logged and skipped: it must not take the built-in envs down with it."""
    global _PLUGINS_LOADED
    loaded: list[str] = []
    for ep in importlib.metadata.entry_points(group="evalgym.envs"):
        try:
            ep.load()()
            loaded.append(ep.name)
        except Exception as exc:  # noqa: BLE001
            log.warning("evalgym.envs plugin %r failed to load: %s: %s", ep.name, type(exc).__name__, exc)
    _PLUGINS_LOADED = True
    return loaded
