"""Choosing, loading and wrapping the driver of each swappable concern."""
