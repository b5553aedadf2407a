import pluggy
from ofelia_hookspecs import PROJECT_NAME, specs
from ofelia_hookspecs.types import KeySpec

from ofelia_core import jobtypes
from ofelia_core.config.validate import global_keys, job_keys


def plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(specs)
    pm.register(jobtypes, name="core-jobtypes")
    return pm


def test_registered_through_the_hooks_like_a_plugin() -> None:
    pm = plugin_manager()
    types = [t for result in pm.hook.ofelia_register_job_types() for t in result]
    assert sorted(t.name for t in types) == ["job-exec", "job-local", "job-run", "job-service-run"]
    sections = [k.section for result in pm.hook.ofelia_add_config_keys() for k in result]
    assert sorted(sections) == ["global", "job"]


def keys_of(type_name: str) -> dict[str, KeySpec]:
    spec = next(t for t in jobtypes.JOB_TYPES if t.name == type_name)
    return job_keys(spec, jobtypes.ofelia_add_config_keys())


def test_ofelia_defaults() -> None:
    run = keys_of("job-run")
    assert run["delete"].default is True and run["pull"].default == "true"
    assert run["user"].default == "root" and run["tty"].default is False
    assert run["history-limit"].default == 10 and run["max-runtime"].default == "24h"
    assert run["schedule"].required and run["schedule"].kind == "schedule"
    assert not run["image"].required and not run["command"].required
    for multi in ("volume", "volumes-from", "environment"):
        assert run[multi].kind == "list"
    exec_keys = keys_of("job-exec")
    assert exec_keys["container"].required and exec_keys["command"].required
    assert exec_keys["user"].default == "root"
    service = keys_of("job-service-run")
    assert service["image"].required and service["user"].default == "root" and "tty" in service
    local = keys_of("job-local")
    assert local["command"].required and "dir" in local and "image" not in local


def test_global_keys_and_secrets() -> None:
    table = global_keys(jobtypes.ofelia_add_config_keys())
    assert table["web-address"].default == "127.0.0.1:8081"
    assert table["web-token-expiry"].default == 24 and table["web-max-login-attempts"].default == 5
    assert table["docker-filter"].kind == "list"
    secrets = {name for name, spec in table.items() if spec.secret}
    assert {"smtp-password", "slack-webhook", "web-password-hash", "web-secret-key"} <= secrets


def test_key_names_are_unique_per_table() -> None:
    for spec in jobtypes.JOB_TYPES:
        names = [k.name for k in spec.keys]
        assert len(names) == len(set(names)), spec.name
    for group in jobtypes.ofelia_add_config_keys():
        names = [k.name for k in group.keys]
        assert len(names) == len(set(names)), group.section
