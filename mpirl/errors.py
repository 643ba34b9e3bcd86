"""Errors every layer may raise without importing the layers above it.

:class:`ConfigError` is bad input: the trainer (and the MDP solver) report it once, from rank 0,
and every rank exits with code 2 before any training. The communication, environment and MDP
code raise it too, so it lives here rather than beside the trainer's config.
"""
from __future__ import annotations


class ConfigError(ValueError):
    """Bad input: reported once, before any training, with exit code 2."""


class Problems(list):
    """Bad input found so far, kept to be reported all at once."""

    def need(self, ok: bool, message: str) -> None:
        """Note ``message`` unless ``ok``."""
        if not ok:
            self.append(message)
