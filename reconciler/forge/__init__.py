"""Forges: where a plan's pull request lives (DESIGN §8)."""
