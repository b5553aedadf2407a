"""The performance recorder against ofelia's metrics contract kit, built through its factory hook.

(ofelia's own suite also runs the kit over every installed driver, found by
entry point; this module is what the distribution ships for itself.)
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pytest
from ofelia_hookspecs.contract.metrics import MakeMetricsRecorder, MetricsRecorderContract
from ofelia_hookspecs.protocols import MetricsRecorder
from ofelia_hookspecs.types import DriverContext
from ofelia_metrics_perf import ofelia_make_metrics_recorder


def make(settings: Mapping[str, Any]) -> MetricsRecorder:
    recorder: MetricsRecorder = ofelia_make_metrics_recorder(
        settings=settings, context=DriverContext(clock=time.monotonic)
    )
    return recorder


class TestPerformanceContract(MetricsRecorderContract):
    @pytest.fixture
    def make_metrics_recorder(self) -> MakeMetricsRecorder:
        return make


class TestPerformanceContractBusySampler(MetricsRecorderContract):
    """The same contract with the background sampler waking every 5 ms and tiny caps,
    so sampling, overflow and alert evaluation run beside every call of the kit."""

    @pytest.fixture
    def make_metrics_recorder(self) -> MakeMetricsRecorder:
        def build(settings: dict[str, Any]) -> MetricsRecorder:
            return make({"sample-interval": "5ms", "max-jobs": "2", "max-gauges": "3",
                         "alert-docker-min-calls": "1", "alert-docker-p95": "1ms", **settings})

        return build


class TestPerformanceContractQuiet(MetricsRecorderContract):
    """No sampler thread and no alerts."""

    @pytest.fixture
    def make_metrics_recorder(self) -> MakeMetricsRecorder:
        def build(settings: dict[str, Any]) -> MetricsRecorder:
            return make({"sample-interval": "0", "alerts": "false", **settings})

        return build
