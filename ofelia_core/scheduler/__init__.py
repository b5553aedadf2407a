"""Deciding when jobs run."""
