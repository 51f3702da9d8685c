"""Policies: what writes a completion for a prompt. ``scripted`` holds seeded baselines that need no model."""
