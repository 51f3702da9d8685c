"""Registering envs: one line per env, a versioned Gymnasium id, and a table ``evalgym envs list`` reads.

    register("gsm8k", 0, domain="math", verifier="math", source=gsm8k_source)
    gymnasium.make("evalgym/gsm8k-v0", split="train", data_dir="../shared/data")

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
    **defaults: Any,
) -> str:
    """Register ``{namespace}/{name}-v{version}``; ``defaults`` are the source's default kwargs."""
    env_id = f"{namespace}/{name}-v{version}"
    if verifier not in VERIFIERS:
        raise EvalgymError(f"env {env_id}: unknown verifier {verifier!r}; registered: {sorted(VERIFIERS)}")
    info = EnvInfo(env_id, name, version, domain, verifier, description, source, VERIFIERS[verifier],
                   max_turns, dict(defaults))
    CATALOG[env_id] = info
    if env_id in gymnasium.registry:
        del gymnasium.registry[env_id]
    gymnasium.register(id=env_id, entry_point=make_text_env, kwargs={"env_id": env_id}, disable_env_checker=False)
    return env_id


def make_text_env(env_id: str, *, max_turns: int | None = None, render_mode: str | None = None,
                  verifier: Verifier | None = None, **source_kwargs: Any) -> TextEnv:
    """The Gymnasium entry point of every registered env."""
    info = CATALOG.get(env_id)
    if info is None:
        raise EvalgymError(f"unknown env {env_id!r}; `evalgym envs list` shows the registered ones")
    kwargs = {**info.defaults, **source_kwargs}
    if "data_dir" not in inspect.signature(info.source).parameters:
        kwargs.pop("data_dir", None)  # generated envs need no data; callers may pass it to every env
    source = info.source(info, **kwargs)
    return TextEnv(source, verifier or info.verifier_factory(), max_turns=max_turns or info.max_turns,
                   render_mode=render_mode)


def resolve_id(name: str) -> str:
    """Accept ``evalgym/gsm8k-v0``, ``gsm8k-v0`` or ``gsm8k`` (latest version)."""
    if name in CATALOG:
        return name
    if f"evalgym/{name}" in CATALOG:
        return f"evalgym/{name}"
    versions = [info for info in CATALOG.values() if info.name == name or info.id.split("/")[-1].rsplit("-v", 1)[0] == name]
    if versions:
        return max(versions, key=lambda i: i.version).id
    raise EvalgymError(f"unknown env {name!r}; `evalgym envs list` shows the registered ones")


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
