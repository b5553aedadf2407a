"""Jobs and global keys read from Docker container labels (``ofelia daemon --docker``).

- :mod:`.parse`: container records (list entries or inspect documents) to
  config sections, global values and diagnostics; pure functions.
- :mod:`.merge`: label sections merged with the files' config (the file wins),
  validated so that a bad label rejects its job only.
- :mod:`.watch`: :class:`~.watch.LabelWatcher`, the thread that follows the
  engine's events, reconnects and reconciles.

Nothing here is imported by ``ofelia validate``; the engine is reached only
through the chosen Docker client driver.
"""
