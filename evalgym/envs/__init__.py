"""evalgym environments: Gymnasium text envs with verifiable rewards.

    import evalgym, gymnasium
    env = gymnasium.make("evalgym/gsm8k-v0", data_dir="../shared/data")

Importing this package registers the built-in envs and every third-party ``evalgym.envs`` entry point.
"""

from evalgym.envs.base import ProblemSource, TextEnv, UnicodeText, Verifier
from evalgym.envs.registry import CATALOG, EnvInfo, load_plugins, make_text_env, register, resolve_id

from evalgym.envs.catalog import register_all as _register_builtin

_register_builtin()
load_plugins()

__all__ = ["CATALOG", "EnvInfo", "ProblemSource", "TextEnv", "UnicodeText", "Verifier", "load_plugins",
           "make_text_env", "register", "resolve_id"]
