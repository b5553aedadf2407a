"""The Prometheus text format (0.0.4) of this driver's families, written directly.

The output is byte for byte what ``prometheus_client.generate_latest`` gives for the same
families (a test holds it to that). It exists for speed: with 1,000 jobs an exposition has
about 2,000 sample lines, and ``generate_latest`` validates and escapes every label name and
metric name of every line again, about 10 microseconds a line (bench/bench_web.py). Here the
names are checked once per family and label set; this driver makes them valid anyway
(names.py), and an unusual one falls back to prometheus_client's own escaping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import cast

from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.utils import floatToGoString

#: prometheus_client's own number formatting (``+Inf``, ``NaN``, ``1.5e+06``), typed.
_go_number = cast(Callable[[float], str], floatToGoString)


def _number(value: float) -> str:
    # Within (-1e6, 1e6) floatToGoString is repr(float(value)): it only changes infinities, NaN
    # (both fail this test) and positive numbers of seven or more integer digits.
    if -1e6 < value < 1e6:
        return repr(float(value))
    return _go_number(value)

_ESCAPING = openmetrics.UNDERSCORES
#: OpenMetrics-only samples that the text format moves into gauges after their family.
_OM_SUFFIXES = ("_created", "_gsum", "_gcount")
_TYPES = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}


def text_exposition(families: Iterable[Metric]) -> str:
    """The text format of ``families``, as ``generate_latest`` would write it."""
    out: list[str] = []
    for metric in families:
        name, kind = metric.name, metric.type
        if kind == "counter":
            name += "_total"
        elif kind == "info":
            name += "_info"
        kind = _TYPES.get(kind, kind)
        help_text = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        escaped = _metric_name(name)
        out.append(f"# HELP {escaped} {help_text}\n# TYPE {escaped} {kind}\n")
        names: dict[str, str] = {}
        label_formats: dict[tuple[str, ...], tuple[str, tuple[str, ...]]] = {}
        trailing: dict[str, list[str]] = {}
        openmetrics_only = {metric.name + suffix: suffix for suffix in _OM_SUFFIXES}
        for sample in metric.samples:
            sample_name = names.get(sample.name)
            if sample_name is None:
                sample_name = names[sample.name] = _metric_name(sample.name)
            line = _sample_line(sample_name, sample.labels, sample.value, sample.timestamp, label_formats)
            suffix = openmetrics_only.get(sample.name)
            if suffix is None:
                out.append(line)
            else:
                trailing.setdefault(suffix, []).append(line)
        for suffix, lines in sorted(trailing.items()):
            gauge = _metric_name(metric.name + suffix)
            out.append(f"# HELP {gauge} {help_text}\n# TYPE {gauge} gauge\n")
            out.extend(lines)
    return "".join(out)


def _sample_line(name: str, labels: dict[str, str], value: float, timestamp: object,
                 label_formats: dict[tuple[str, ...], tuple[str, tuple[str, ...]]]) -> str:
    stamp = "" if timestamp is None else f" {int(float(timestamp) * 1000):d}"  # type: ignore[arg-type]
    if not labels:
        return f"{name} {_number(value)}{stamp}\n"
    keys = tuple(labels)
    cached = label_formats.get(keys)
    if cached is None:  # once per family and label set: the escaped names in sorted order, as a template
        ordered = tuple(sorted(keys))
        pairs = ",".join(f'{openmetrics.escape_label_name(k, _ESCAPING)}="{{}}"' for k in ordered)
        cached = label_formats[keys] = (pairs.replace("{}", "\0").replace("{", "{{").replace("}", "}}")
                                        .replace("\0", "{}"), ordered)
    template, ordered = cached
    return f"{name}{{{template.format(*[_label_value(labels[k]) for k in ordered])}}} {_number(value)}{stamp}\n"


def _label_value(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _metric_name(name: str) -> str:
    # With UNDERSCORES escaping every name comes out legacy-valid, so the line never takes
    # generate_latest's quoted-name form.
    return openmetrics.escape_metric_name(name, _ESCAPING)
