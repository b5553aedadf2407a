"""The plugin manager: default plugins, blocking, hook checks, factory refusal."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pluggy
import pytest
from ofelia_hookspecs import hookimpl
from ofelia_hookspecs.types import JobTypeSpec, KeySpec

from ofelia_core.drivers.loading import build_driver, default_context, register_drivers
from ofelia_core.drivers.selection import choose_drivers
from ofelia_core.errors import PluginError
from ofelia_core.plugins import (
    DEFAULT_PLUGINS,
    OfeliaHooks,
    build_plugin_manager,
    check_hooks,
    disabled_plugins,
)


class RogueBufferPoolPlugin:
    """A general plugin that implements a driver factory hook without being chosen."""

    @hookimpl
    def ofelia_make_buffer_pool(self, settings: Any, context: Any) -> Any:
        raise AssertionError("must never be called")


def test_default_plugins_register_like_third_party_ones() -> None:
    pm = build_plugin_manager(load_entrypoints=False)
    for name in DEFAULT_PLUGINS:
        assert pm.has_plugin(name)
    types = OfeliaHooks(pm).job_types()
    assert {"job-exec", "job-run", "job-local", "job-service-run"} <= set(types)


def test_blocked_default_plugin_is_not_registered() -> None:
    pm = build_plugin_manager(disabled=["ofelia_core.jobtypes"], load_entrypoints=False)
    assert not pm.has_plugin("ofelia_core.jobtypes")
    assert OfeliaHooks(pm).job_types() == {}


def test_disabled_plugins_parses_commas_and_spaces() -> None:
    assert disabled_plugins({"OFELIA_DISABLED_PLUGINS": "a, b  c,,"}) == ["a", "b", "c"]
    assert disabled_plugins({}) == []


def test_misspelled_hook_is_refused_with_the_known_hooks() -> None:
    pm = build_plugin_manager(load_entrypoints=False)
    pm.register(SimpleNamespace(ofelia_observe_run_ends=hookimpl(lambda job, run: None)), name="typo")
    with pytest.raises(PluginError, match=r"ofelia_observe_run_ends.*Known hooks:.*ofelia_observe_run_end"):
        check_hooks(pm)


def test_general_plugin_implementing_a_factory_is_refused() -> None:
    pm = build_plugin_manager(load_entrypoints=False)
    pm.register(RogueBufferPoolPlugin(), name="rogue")
    with pytest.raises(PluginError, match=r"plugin 'rogue' implements ofelia_make_buffer_pool.*OFELIA_BUFFER_POOL"):
        register_drivers(pm, choose_drivers(env={}))


def test_chosen_driver_answers_its_factory() -> None:
    pm = build_plugin_manager(load_entrypoints=False)
    choices = choose_drivers(env={})
    loaded = register_drivers(pm, choices)
    pool = build_driver(pm, "buffer-pool", {}, default_context())
    assert pm.get_name(loaded["buffer-pool"]) == "ofelia.buffer_pool:baseline"
    assert pool.get("job", "stdout").write(b"x") == 1


def test_factory_result_must_satisfy_the_protocol() -> None:
    class NotAPoolDriver:
        @hookimpl
        def ofelia_make_buffer_pool(self, settings: Any, context: Any) -> object:
            return object()

    pm = pluggy.PluginManager("ofelia")
    from ofelia_hookspecs import specs

    pm.add_hookspecs(specs)
    pm.register(NotAPoolDriver())
    with pytest.raises(PluginError, match="does not satisfy the BufferPool protocol"):
        build_driver(pm, "buffer-pool", {}, default_context())


def test_job_type_declared_twice_is_an_error() -> None:
    class DuplicateJobType:
        @hookimpl
        def ofelia_register_job_types(self) -> list[JobTypeSpec]:
            return [JobTypeSpec("job-local", (KeySpec("x"),))]

    pm = build_plugin_manager(load_entrypoints=False)
    pm.register(DuplicateJobType(), name="dup")
    with pytest.raises(PluginError, match="job type 'job-local' is declared twice"):
        OfeliaHooks(pm).job_types()
