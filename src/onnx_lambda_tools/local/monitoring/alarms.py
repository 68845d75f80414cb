"""The template's alarms, evaluated on the local metrics by CloudWatch's rules.

Each alarm keeps its own rule from ``template.yaml``: the metric and its ``Statistic`` or
``ExtendedStatistic``, ``Period``, ``EvaluationPeriods`` (N), ``DatapointsToAlarm`` (M, default N),
``Threshold``, ``ComparisonOperator`` and ``TreatMissingData`` (default ``missing``). As CloudWatch
documents it ("Configuring how CloudWatch alarms treat missing data"):

* the alarm looks at an evaluation range a little longer than N periods (here N + 2, as in the
  documentation's examples; CloudWatch doesn't publish its exact length), and only at complete periods;
* with at least N real datapoints in the range, the most recent N decide, and missing data plays no part;
* with fewer, every real datapoint counts and the missing ones are filled in as the alarm says: as
  breaching, as not breaching, or (``missing``, ``ignore``) not at all; with no datapoint at all,
  ``missing`` gives INSUFFICIENT_DATA and ``ignore`` keeps the current state;
* M or more breaching datapoints give ALARM, fewer give OK.

An alarm starts in INSUFFICIENT_DATA, as a new CloudWatch alarm does, and is evaluated once a (scaled)
minute. Every change of state is logged, with CloudWatch's kind of reason, and kept in its history.
Alarms this evaluator can't run (metric math, anomaly detection) say so instead of showing a state.
"""

from __future__ import annotations

import asyncio
import logging
import math
import operator
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from onnx_lambda_tools.local.monitoring.metrics import MetricId, MetricStore, Statistic, TimeScale
from onnx_lambda_tools.local.monitoring.template import AlarmDefinition

log = logging.getLogger(__name__)

#: Periods the evaluation range holds beyond EvaluationPeriods.
EXTRA_PERIODS: Final = 2
_HISTORY: Final = 100

_COMPARISONS: Final[Mapping[str, tuple[Callable[[float, float], bool], str]]] = {
    "GreaterThanOrEqualToThreshold": (operator.ge, "greater than or equal to"),
    "GreaterThanThreshold": (operator.gt, "greater than"),
    "LessThanThreshold": (operator.lt, "less than"),
    "LessThanOrEqualToThreshold": (operator.le, "less than or equal to"),
}
_TREATMENTS: Final = frozenset({"missing", "ignore", "breaching", "notBreaching"})


class AlarmState(StrEnum):
    OK = "OK"
    ALARM = "ALARM"
    INSUFFICIENT_DATA = "INSUFFICIENT_DATA"


class NotEvaluable(ValueError):
    """An alarm the local evaluator can't run, and why."""


@dataclass(frozen=True, slots=True)
class AlarmRule:
    """One alarm's rule, from its template properties."""

    metric: MetricId
    statistic: Statistic
    period: int  # CloudWatch seconds
    evaluation_periods: int
    datapoints_to_alarm: int
    threshold: float
    comparison: str
    treat_missing_data: str = "missing"

    @classmethod
    def from_properties(cls, properties: Mapping[str, Any]) -> AlarmRule:
        if "Metrics" in properties:
            raise NotEvaluable("metric math alarms (Metrics) are not evaluated locally")
        comparison = str(properties.get("ComparisonOperator", ""))
        if comparison not in _COMPARISONS:
            raise NotEvaluable(f"the comparison {comparison or '(none)'} is not evaluated locally")
        if "Threshold" not in properties:
            raise NotEvaluable("the alarm has no Threshold")
        statistic = properties.get("ExtendedStatistic") or properties.get("Statistic")
        if not statistic:
            raise NotEvaluable("the alarm has neither Statistic nor ExtendedStatistic")
        try:
            parsed = Statistic.parse(str(statistic))
        except ValueError as error:
            raise NotEvaluable(str(error)) from None
        treatment = str(properties.get("TreatMissingData", "missing"))
        if treatment not in _TREATMENTS:
            raise NotEvaluable(f"TreatMissingData {treatment!r} is not one of {', '.join(sorted(_TREATMENTS))}")
        dimensions = {str(d["Name"]): str(d["Value"]) for d in properties.get("Dimensions") or []}
        evaluation_periods = int(properties.get("EvaluationPeriods", 1))
        return cls(
            metric=MetricId.of(str(properties.get("Namespace")), str(properties.get("MetricName")), dimensions),
            statistic=parsed,
            period=int(properties.get("Period", 60)),
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=int(properties.get("DatapointsToAlarm", evaluation_periods)),
            threshold=float(properties["Threshold"]),
            comparison=comparison,
            treat_missing_data=treatment,
        )

    def breaches(self, value: float) -> bool:
        return _COMPARISONS[self.comparison][0](value, self.threshold)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The outcome of one evaluation: ``state`` None keeps the current state (``ignore`` with no data)."""

    state: AlarmState | None
    reason: str
    #: (period start, value or None when missing), oldest first, over the evaluation range.
    datapoints: tuple[tuple[float, float | None], ...]


def evaluate(rule: AlarmRule, datapoints: Sequence[tuple[float, float | None]]) -> Evaluation:
    """The state ``datapoints`` (the evaluation range, oldest first) put the alarm in, by CloudWatch's rules."""
    points = tuple(datapoints)
    real = [(at, value) for at, value in points if value is not None]
    n, m = rule.evaluation_periods, rule.datapoints_to_alarm
    relation = _COMPARISONS[rule.comparison][1]
    if len(real) >= n:
        considered = real[-n:]
        breaching = sum(rule.breaches(value) for _, value in considered)
        filled = 0
    else:
        if not real and rule.treat_missing_data == "missing":
            return Evaluation(
                AlarmState.INSUFFICIENT_DATA,
                f"Insufficient Data: {len(points)} datapoints were unknown.",
                points,
            )
        if not real and rule.treat_missing_data == "ignore":
            return Evaluation(None, "no datapoints, and missing data is ignored: the state stays", points)
        considered = real
        filled = n - len(real)
        breaching = sum(rule.breaches(value) for _, value in considered)
        if rule.treat_missing_data == "breaching":
            breaching += filled
    state = AlarmState.ALARM if breaching >= m else AlarmState.OK
    shown = ", ".join(f"{_number(value)} ({_time(at)})" for at, value in reversed(considered))
    if not considered:
        as_what = {"breaching": "Breaching", "notBreaching": "NonBreaching"}.get(rule.treat_missing_data, "Missing")
        reason = (
            f"Threshold Crossed: no datapoints were received for {filled} period{'s' * (filled != 1)} and "
            f"{filled} missing datapoint{'s were' if filled != 1 else ' was'} treated as [{as_what}]."
        )
        return Evaluation(state, reason, points)
    missing_note = ""
    if filled:
        as_what = {"breaching": "breaching", "notBreaching": "not breaching"}.get(rule.treat_missing_data, "missing")
        missing_note = f"; {filled} missing datapoint{'s were' if filled != 1 else ' was'} treated as {as_what}"
    counted = sum(rule.breaches(value) for _, value in considered)
    reason = (
        f"Threshold Crossed: {counted} out of the last {len(considered)} datapoints [{shown}] "
        f"{'was' if counted == 1 else 'were'} {relation} the threshold ({_number(rule.threshold)}){missing_note} "
        f"(minimum {m} datapoint{'s' * (m != 1)} for OK -> ALARM transition)."
    )
    return Evaluation(state, reason, points)


@dataclass(frozen=True, slots=True)
class Transition:
    timestamp: float
    old: AlarmState
    new: AlarmState
    reason: str


@dataclass
class AlarmStatus:
    """One alarm: its definition, its rule (or why it has none) and its state so far."""

    definition: AlarmDefinition
    rule: AlarmRule | None
    not_evaluated: str | None = None
    #: Said next to the state, e.g. that the metric can't exist locally.
    note: str | None = None
    state: AlarmState = AlarmState.INSUFFICIENT_DATA
    reason: str = "Unchecked: Initial alarm creation"
    updated: float = field(default_factory=time.time)
    evaluated: float | None = None
    datapoints: tuple[tuple[float, float | None], ...] = ()
    history: deque[Transition] = field(default_factory=lambda: deque(maxlen=_HISTORY))

    def to_json(self) -> dict[str, Any]:
        rule = self.rule
        return {
            "logicalId": self.definition.logical_id,
            "name": self.definition.name,
            "arn": self.definition.arn,
            "description": self.definition.properties.get("AlarmDescription"),
            "state": None if self.not_evaluated else self.state.value,
            "reason": self.not_evaluated or self.reason,
            "note": self.note,
            "updated": self.updated,
            "evaluated": self.evaluated,
            "rule": None
            if rule is None
            else {
                "metric": rule.metric.to_json(),
                "statistic": rule.statistic.name,
                "period": rule.period,
                "evaluationPeriods": rule.evaluation_periods,
                "datapointsToAlarm": rule.datapoints_to_alarm,
                "threshold": rule.threshold,
                "comparison": rule.comparison,
                "treatMissingData": rule.treat_missing_data,
            },
            "datapoints": [[at, value] for at, value in self.datapoints],
            "history": [
                {"timestamp": t.timestamp, "old": t.old.value, "new": t.new.value, "reason": t.reason}
                for t in self.history
            ],
        }


class AlarmEvaluator:
    """Evaluates every alarm on the store, once a (scaled) minute, and logs each change of state."""

    def __init__(
        self,
        store: MetricStore,
        alarms: Sequence[AlarmDefinition],
        scale: TimeScale,
        *,
        why_not_local: Callable[[MetricId], str | None] = lambda _: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.scale = scale
        self._clock = clock
        self.alarms: list[AlarmStatus] = []
        for definition in alarms:
            status = AlarmStatus(definition, None, updated=clock())
            if definition.unresolved:
                status.not_evaluated = "refers to what only a deployed stack has: " + ", ".join(definition.unresolved)
            else:
                try:
                    status.rule = AlarmRule.from_properties(definition.properties)
                except NotEvaluable as error:
                    status.not_evaluated = str(error)
            if status.rule is not None:
                absent = why_not_local(status.rule.metric)
                if absent:
                    status.note = f"its metric can't exist locally ({absent}): this is the state its rule gives no data"
            self.alarms.append(status)

    def status(self, logical_id_or_name: str) -> AlarmStatus:
        for status in self.alarms:
            if logical_id_or_name in (status.definition.logical_id, status.definition.name, status.definition.arn):
                return status
        raise KeyError(logical_id_or_name)

    def evaluate_all(self, now: float | None = None) -> list[Transition]:
        """Evaluate every alarm on the periods complete at ``now``; the changes of state."""
        now = self._clock() if now is None else now
        transitions: list[Transition] = []
        for status in self.alarms:
            if status.rule is None:
                continue
            outcome = evaluate(status.rule, self._range(status.rule, now))
            status.evaluated, status.datapoints = now, outcome.datapoints
            if outcome.state is None:
                continue
            if outcome.state is not status.state:
                transition = Transition(now, status.state, outcome.state, outcome.reason)
                status.history.append(transition)
                transitions.append(transition)
                level = logging.WARNING if outcome.state is AlarmState.ALARM else logging.INFO
                log.log(
                    level,
                    "Alarm %s: %s -> %s: %s",
                    status.definition.logical_id,
                    status.state.value,
                    outcome.state.value,
                    outcome.reason,
                )
                status.state, status.updated = outcome.state, now
            status.reason = outcome.reason
        return transitions

    def _range(self, rule: AlarmRule, now: float) -> list[tuple[float, float | None]]:
        period = self.scale.local(rule.period)
        end = math.floor(now / period) * period  # the end of the last complete period
        count = rule.evaluation_periods + EXTRA_PERIODS
        start = end - count * period
        found = {
            round(point.timestamp / period): point.value
            for point in self.store.datapoints(rule.metric, rule.statistic, period, start, end)
        }
        return [(start + i * period, found.get(round((start + i * period) / period))) for i in range(count)]

    def tick_seconds(self) -> float:
        """How often to evaluate: each (scaled) minute, or each period where one is shorter."""
        periods = [self.scale.local(status.rule.period) for status in self.alarms if status.rule]
        return min([self.scale.minute_seconds, *periods])

    async def run(self) -> None:
        """Evaluate at every tick (just past it, so the last period's datapoints are in), until cancelled."""
        tick = self.tick_seconds()
        settle = min(0.1 * tick, 1.0)
        while True:
            now = self._clock()
            await asyncio.sleep(math.floor(now / tick) * tick + tick + settle - now)
            try:
                self.evaluate_all()
            except Exception:  # one bad evaluation must not end the alarms
                log.exception("the alarms could not be evaluated")

    def to_json(self) -> list[dict[str, Any]]:
        return [status.to_json() for status in self.alarms]


def _number(value: float) -> str:
    return repr(round(value, 3)) if value != int(value) else f"{value:.1f}"


def _time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%d/%m/%y %H:%M:%S")
