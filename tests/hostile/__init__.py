"""Hostile programs: what a student could type to escape, tamper or freeze (see corpus.py)."""
