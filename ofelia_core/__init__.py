"""ofelia: a Docker job scheduler built on pluggy."""

__version__ = "0.1.0"
