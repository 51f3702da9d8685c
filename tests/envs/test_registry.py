"""The env registry (``evalgym.envs.registry``) and Gymnasium registration.

Covers: every id in ``CATALOG`` builds with ``gymnasium.make(id, data_dir=...)`` and passes
Gymnasium's ``check_env`` (no warnings beyond the render-fps note); the ``evalgym/<name>-v<N>`` id
format and the CATALOG entry agreeing with its id; ``resolve_id`` short forms; unknown ids raise
``EvalgymError`` naming the id; an unknown procedural knob and a bad knob value fail at make() naming
the knob; third-party plugin discovery through a real ``evalgym.envs`` entry point of a distribution
created in ``tmp_path``, made with ``gymnasium.make`` and graded, then removed from both registries.
"""

from __future__ import annotations

import re
import sys
import textwrap
import warnings

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env

import evalgym.envs
from evalgym.envs import CATALOG, TextEnv, make_text_env, resolve_id
from evalgym.errors import EvalgymError
from evalgym.types import Verdict

ALL_IDS = sorted(CATALOG)
BUILTIN_IDS = [i for i in ALL_IDS if i.startswith("evalgym/")]
ID_RE = re.compile(r"^evalgym/(?P<name>[a-z0-9]+(?:-[a-z0-9]+)*)-v(?P<version>\d+)$")


def test_catalog_has_the_builtin_envs():
    for env_id in ("evalgym/gsm8k-v0", "evalgym/math-v0", "evalgym/math500-v0", "evalgym/countdown-v0",
                   "evalgym/arithmetic-v1", "evalgym/retry-arithmetic-v1"):
        assert env_id in CATALOG


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_make_and_check_env(env_id, data_dir):
    env = gymnasium.make(env_id, data_dir=str(data_dir))
    try:
        assert isinstance(env.unwrapped, TextEnv)
        assert env.spec is not None and env.spec.id == env_id
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env.unwrapped)
        other = [str(w.message) for w in caught if "render_fps" not in str(w.message)]
        assert not other, f"check_env warned: {other}"
        obs, info = env.reset(seed=0, options={"index": 0})
        assert obs and obs == info["problem"].prompt_text
        assert info["problem"].env_id == env_id
    finally:
        env.close()


@pytest.mark.parametrize("env_id", BUILTIN_IDS)
def test_id_format(env_id):
    m = ID_RE.match(env_id)
    assert m, f"{env_id!r} is not evalgym/<name>-v<N>"
    info = CATALOG[env_id]
    assert (info.id, info.name, info.version) == (env_id, m["name"], int(m["version"]))
    assert info.domain and info.verifier and info.description
    assert env_id in gymnasium.registry
    assert gymnasium.spec(env_id).entry_point is make_text_env


def test_resolve_id():
    assert resolve_id("gsm8k") == "evalgym/gsm8k-v0"
    assert resolve_id("gsm8k-v0") == "evalgym/gsm8k-v0"
    assert resolve_id("evalgym/gsm8k-v0") == "evalgym/gsm8k-v0"
    assert resolve_id("retry-arithmetic") == "evalgym/retry-arithmetic-v1"
    assert resolve_id("math") == "evalgym/math-v0"  # not math500-v0


@pytest.mark.parametrize("name", ["gsm9k", "evalgym/gsm8k-v9", "nope-v0", ""])
def test_resolve_unknown_id(name):
    with pytest.raises(EvalgymError) as exc:
        resolve_id(name)
    assert repr(name) in str(exc.value)


def test_make_text_env_unknown_id():
    with pytest.raises(EvalgymError, match="evalgym/nope-v0"):
        make_text_env("evalgym/nope-v0")


def test_unknown_knob_named():
    with pytest.raises(EvalgymError) as exc:
        gymnasium.make("evalgym/arithmetic-v1", digitz=3)
    assert "digitz" in str(exc.value)
    assert "digits" in str(exc.value)  # and the known ones are listed


@pytest.mark.parametrize("env_id,knobs,named", [
    ("evalgym/arithmetic-v1", {"digits": 0}, "digits"),
    ("evalgym/arithmetic-v1", {"terms": 1}, "terms"),
    ("evalgym/arithmetic-v1", {"ops": "/"}, "ops"),
    ("evalgym/linear-equations-v1", {"coef_max": 0}, "coef_max"),
    ("evalgym/fractions-v1", {"den_max": 1}, "den_max"),
    ("evalgym/countdown-gen-v1", {"count": 9}, "count"),
])
def test_bad_knob_value_named(env_id, knobs, named):
    with pytest.raises(EvalgymError, match=re.escape(repr(named))):
        gymnasium.make(env_id, **knobs)


def test_knobs_take_effect():
    env = gymnasium.make("evalgym/arithmetic-v1", digits=3, terms=4, ops="+")
    for i in range(20):
        _, info = env.reset(options={"index": i})
        nums = [int(x) for x in info["problem"].extra["expression"].split(" + ")]
        assert len(nums) == 4 and all(0 <= n <= 999 for n in nums)
        assert int(info["problem"].answer) == sum(nums)


PLUGIN_MODULE = '''
from evalgym.envs import register
from evalgym.types import ChatMessage, Problem


class EchoSource:
    def __init__(self, info, scale=2):
        self.info, self.scale, self.size = info, scale, 10

    def problem(self, i):
        answer = str(self.scale * i)
        return Problem(id=f"echo-v0/{i}", env_id=self.info.id, env_version=self.info.version,
                       domain=self.info.domain, messages=(ChatMessage("user", f"What is {self.scale} * {i}?"),),
                       answer=answer, reference=f"\\\\boxed{{{answer}}}", index=i)


def register_envs():
    register("echo", 0, domain="toy", verifier="math", source=EchoSource, namespace="thirdparty",
             description="third-party test env")
'''


def test_third_party_plugin(tmp_path, monkeypatch):
    module = "evalgym_thirdparty_echo_plugin"
    (tmp_path / f"{module}.py").write_text(PLUGIN_MODULE)
    dist = tmp_path / "thirdparty_envs-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-envs\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(f"""\
        [evalgym.envs]
        echo = {module}:register_envs
        """))
    env_id = "thirdparty/echo-v0"
    assert env_id not in CATALOG
    monkeypatch.syspath_prepend(str(tmp_path))  # restored at teardown
    try:
        loaded = evalgym.envs.load_plugins()
        assert "echo" in loaded
        assert env_id in CATALOG and env_id in gymnasium.registry
        env = gymnasium.make(env_id, scale=3)
        obs, info = env.reset(seed=0, options={"index": 7})
        assert obs == "What is 3 * 7?"
        assert info["problem"].env_id == env_id and info["problem"].answer == "21"
        _, reward, terminated, _, info = env.step("The product is \\boxed{21}.")
        assert (reward, terminated) == (1.0, True)
        assert isinstance(info["verdict"], Verdict) and info["verdict"].verifier == "math"
        env.reset(options={"index": 7})
        assert env.step("\\boxed{22}")[1] == 0.0
        assert resolve_id("echo") == env_id
    finally:
        CATALOG.pop(env_id, None)
        gymnasium.registry.pop(env_id, None)
        sys.modules.pop(module, None)
    assert env_id not in CATALOG and env_id not in gymnasium.registry


def test_broken_plugin_is_skipped(tmp_path, monkeypatch, caplog):
    module = "evalgym_thirdparty_broken_plugin"
    (tmp_path / f"{module}.py").write_text("def register_envs():\n    raise RuntimeError('plugin exploded')\n")
    dist = tmp_path / "broken_envs-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-envs\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[evalgym.envs]\nbroken = {module}:register_envs\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(CATALOG)
    try:
        with caplog.at_level("WARNING"):
            loaded = evalgym.envs.load_plugins()
        assert "broken" not in loaded
        assert "plugin exploded" in caplog.text
        assert set(CATALOG) == before  # nothing half-registered; the built-ins still there
    finally:
        sys.modules.pop(module, None)
