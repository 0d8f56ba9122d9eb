"""Hive: a self-improving experiment runner."""

__version__ = "0.1.0"
