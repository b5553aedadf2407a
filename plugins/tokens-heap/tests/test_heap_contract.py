"""The heap token manager against ofelia's token manager contract kit, built through its factory hook.

(ofelia's own suite also runs the kit over every installed driver, found by
entry point; this module is what the distribution ships for itself.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ofelia_hookspecs.contract.tokens import MakeTokenManager, TokenManagerContract
from ofelia_hookspecs.protocols import TokenManager
from ofelia_hookspecs.types import DriverContext
from ofelia_tokens_heap import ofelia_make_token_manager


def make(settings: dict[str, Any], clock: Callable[[], float]) -> TokenManager:
    manager: TokenManager = ofelia_make_token_manager(settings=settings, context=DriverContext(clock=clock))
    return manager


class TestHeapContract(TokenManagerContract):
    @pytest.fixture
    def make_token_manager(self) -> MakeTokenManager:
        return make


class TestHeapContractBusyWorker(TokenManagerContract):
    """The same contract with the worker cleaning up every 5 ms, one token a pass,
    so its passes interleave with every test's calls."""

    @pytest.fixture
    def make_token_manager(self) -> MakeTokenManager:
        def build(settings: dict[str, Any], clock: Callable[[], float]) -> TokenManager:
            return make({"cleanup-interval": "5ms", "cleanup-batch-size": 1, **settings}, clock)

        return build
