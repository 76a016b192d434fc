"""Integration tests use the real broker fixtures of ``tests/conftest.py``."""
