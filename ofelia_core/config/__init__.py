"""Configuration: reading INI and YAML files into :mod:`.model`, checking
them against the registered job types and keys, and parsing schedules.

Nothing is imported here so that ``import ofelia_core.config.model`` stays
cheap; import the submodule you need (``loader``, ``validate``, ``schedule``).
"""
