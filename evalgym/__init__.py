"""evalgym: an evaluation-first gym for post-training language models.

``import evalgym`` registers every env with Gymnasium (``gymnasium.make("evalgym/gsm8k-v0")``).
"""

__version__ = "0.1.0"

from evalgym import envs as envs  # noqa: E402  (registers envs)
