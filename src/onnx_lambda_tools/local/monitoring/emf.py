"""The function's own metrics: CloudWatch's embedded metric format (EMF), read from its log streams.

Powertools' ``Metrics`` prints one JSON object per flush to stdout; in Lambda, CloudWatch Logs turns every
such line into metrics. Here the emulator's execution environments write stdout to one file per
environment (the log streams), and :class:`LogTail` reads what each file gained since the last look, so
the same lines land in the :class:`~onnx_lambda_tools.local.monitoring.metrics.MetricStore`.

The rules are the EMF specification's: ``_aws.Timestamp`` (epoch milliseconds) dates the values; each
``CloudWatchMetrics`` directive names a namespace, dimension sets (lists of member names, whose values
are the line's top-level strings) and metrics, whose values are the line's top-level numbers or lists
of numbers; every metric is published under every dimension set. A line that breaks the rules is not
a metric, as CloudWatch would drop it, and is logged once per stream.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onnx_lambda_tools.local.monitoring.metrics import MetricId, MetricStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EmfValues:
    """A metric's values from one EMF line, at the line's time (epoch seconds)."""

    metric: MetricId
    values: tuple[float, ...]
    timestamp: float
    unit: str | None


class NotEmf(ValueError):
    """A JSON line with ``_aws`` that breaks the EMF rules."""


def parse_emf(document: Mapping[str, Any]) -> list[EmfValues]:
    """The metrics of one EMF document; ``[]`` for a JSON line that is not EMF (no ``_aws``)."""
    metadata = document.get("_aws")
    if metadata is None:
        return []
    if not isinstance(metadata, dict):
        raise NotEmf("_aws must be an object")
    timestamp = metadata.get("Timestamp")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        raise NotEmf("_aws.Timestamp must be a number of milliseconds")
    directives = metadata.get("CloudWatchMetrics")
    if not isinstance(directives, list):
        raise NotEmf("_aws.CloudWatchMetrics must be a list")
    found: list[EmfValues] = []
    for directive in directives:
        if not isinstance(directive, dict) or not isinstance(directive.get("Namespace"), str):
            raise NotEmf("each CloudWatchMetrics directive needs a Namespace")
        dimension_sets = directive.get("Dimensions", [[]])
        if not isinstance(dimension_sets, list) or not all(isinstance(names, list) for names in dimension_sets):
            raise NotEmf("Dimensions must be a list of lists of member names")
        metrics = directive.get("Metrics")
        if not isinstance(metrics, list):
            raise NotEmf("Metrics must be a list")
        for definition in metrics:
            name = definition.get("Name") if isinstance(definition, dict) else None
            if not isinstance(name, str):
                raise NotEmf("each metric needs a Name")
            values = _values(document.get(name), name)
            unit = definition.get("Unit")
            for names in dimension_sets:
                dimensions = {str(key): _dimension(document, str(key)) for key in names}
                found.append(
                    EmfValues(
                        MetricId.of(directive["Namespace"], name, dimensions),
                        values,
                        timestamp / 1000.0,
                        unit if isinstance(unit, str) else None,
                    )
                )
    return found


def _values(raw: Any, name: str) -> tuple[float, ...]:
    items = raw if isinstance(raw, list) else [raw]
    if not items or any(isinstance(item, bool) or not isinstance(item, int | float) for item in items):
        raise NotEmf(f"the value of {name!r} must be a number or a list of numbers")
    return tuple(float(item) for item in items)


def _dimension(document: Mapping[str, Any], key: str) -> str:
    value = document.get(key)
    if not isinstance(value, str):
        raise NotEmf(f"the dimension {key!r} needs a string member of the same name")
    return value


def emf_documents(text: str) -> Iterator[dict[str, Any]]:
    """The JSON objects with ``_aws`` among ``text``'s lines (START/REPORT lines and JSON logs are skipped)."""
    for line in text.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict):
            yield document


class LogTail:
    """Reads each log stream from where it was last read, and puts the EMF metrics it finds into a store."""

    def __init__(self, store: MetricStore) -> None:
        self._store = store
        self._offsets: dict[Path, int] = {}
        self._warned: set[Path] = set()

    def read(self, path: Path) -> int:
        """Ingest the complete lines ``path`` gained since the last call; how many metric values were stored."""
        offset = self._offsets.get(path, 0)
        try:
            with path.open("rb") as stream:
                stream.seek(offset)
                data = stream.read()
        except FileNotFoundError:
            return 0
        end = data.rfind(b"\n") + 1  # a line still being written is read next time
        self._offsets[path] = offset + end
        stored = 0
        for document in emf_documents(data[:end].decode("utf-8", errors="replace")):
            try:
                found = parse_emf(document)
            except NotEmf as error:
                if path not in self._warned:
                    self._warned.add(path)
                    log.warning("%s: a line with _aws is not valid EMF, so no metric (%s)", path.name, error)
                continue
            for item in found:
                self._store.put_many(item.metric, item.values, timestamp=item.timestamp, unit=item.unit)
                stored += len(item.values)
        return stored

    def forget(self, path: Path) -> None:
        self._offsets.pop(path, None)
        self._warned.discard(path)
