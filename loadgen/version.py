"""loadgen's version, in a module of its own: every module may read it without importing the package's API."""

__all__ = ["__version__"]

__version__ = "0.1.0"
