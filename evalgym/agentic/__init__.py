"""Agentic environments: tools that run in a sandbox session, multi-turn episodes kept token-exact.

    tools.py    tool specs, argument checks, tool-call parsers (Hermes by default, one per model family)
    env.py      AgenticEnv: a TextEnv whose step runs the completion's tool calls in the episode's session
    toolset.py  the built-in tools (python, shell, write_file, submit) over a sandbox session
    tokens.py   the token ids an env appends after a turn, from the chat template, never re-tokenizing
    runner.py   the async episode runner: many episodes in flight over a policy's (or engine's) generate
"""
