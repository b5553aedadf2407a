"""Suite-wide fixtures: the project's own Docker engine (see docker_engine_fixtures)."""

pytest_plugins = ["docker_engine_fixtures"]
