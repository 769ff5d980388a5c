"""The package version (one place, importable without side effects)."""

__version__ = "0.1.0"
