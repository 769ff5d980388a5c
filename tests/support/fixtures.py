"""The suite-wide fixtures of the support kit (a pytest plugin of ``tests/conftest.py``)."""

from __future__ import annotations

from .clock import fake_clock

__all__ = ["fake_clock"]
