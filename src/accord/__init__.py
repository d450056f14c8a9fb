"""Accord: end-to-end encrypted messaging with public safety enforced by cryptography."""

__version__ = "0.1.0"
