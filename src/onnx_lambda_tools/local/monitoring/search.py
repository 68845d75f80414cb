"""CloudWatch's ``SEARCH()`` metric math function, over the local store: the part of its syntax dashboards use.

``SEARCH('{Namespace,DimensionName,...} MetricName="X" term', 'Statistic', Period)`` finds every metric that

* matches the schema, if one is given: that namespace, and exactly those dimension names (quoted or not);
* matches every term (terms are joined by AND, as in CloudWatch; an explicit ``AND`` is accepted):
  ``Key="value"`` wants the property (``Namespace``, ``MetricName`` or a dimension name) equal to the value;
  ``Key=value`` wants the value within it (case-insensitive); a bare ``word`` must appear within the
  namespace, the metric name, or a dimension's name or value, and a ``"phrase"`` must equal one of them.

``OR``, ``NOT`` and parentheses are refused with a message, not guessed at. Each match is one series,
computed with the search's statistic and period.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from onnx_lambda_tools.local.monitoring.metrics import MetricId, Statistic

_CALL = re.compile(
    r"""^\s*SEARCH\(\s*'(?P<query>(?:[^'\\]|\\.)*)'\s*,\s*'(?P<stat>[^']+)'\s*(?:,\s*(?P<period>\d+)\s*)?\)\s*$""",
    re.IGNORECASE,
)
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<key>[\w./:-]+)=(?:"(?P<quoted>[^"]*)"|(?P<bare>[^\s"()]+))
        | "(?P<phrase>[^"]*)"
        | (?P<word>[^\s"()]+)
        | (?P<paren>[()])
    )""",
    re.VERBOSE,
)


class SearchError(ValueError):
    """A SEARCH expression this local store can't run, and why."""


@dataclass(frozen=True, slots=True)
class _Term:
    key: str | None
    value: str
    exact: bool


@dataclass(frozen=True, slots=True)
class Search:
    """A parsed ``SEARCH()`` call."""

    schema_namespace: str | None
    schema_dimensions: frozenset[str] | None
    terms: tuple[_Term, ...]
    statistic: Statistic
    period: int | None  # seconds; None: the widget's

    @property
    def namespace(self) -> str | None:
        """The one namespace the search is confined to (by its schema or a ``Namespace="..."`` term), if any."""
        if self.schema_namespace is not None:
            return self.schema_namespace
        return next((term.value for term in self.terms if term.key == "Namespace" and term.exact), None)

    def matches(self, metric: MetricId) -> bool:
        if self.schema_namespace is not None:
            if metric.namespace != self.schema_namespace:
                return False
            if self.schema_dimensions is not None and {name for name, _ in metric.dimensions} != self.schema_dimensions:
                return False
        return all(_term_matches(term, metric) for term in self.terms)

    def select(self, metrics: Iterable[MetricId]) -> list[MetricId]:
        return sorted(metric for metric in metrics if self.matches(metric))


def parse_search(expression: str) -> Search:
    """``SEARCH('...', 'stat', period)``; :class:`SearchError` says what isn't supported."""
    call = _CALL.match(expression)
    if call is None:
        raise SearchError(f"not a SEARCH('query', 'statistic', period) call: {expression!r}")
    query = call["query"].replace("\\'", "'").strip()
    namespace: str | None = None
    dimensions: frozenset[str] | None = None
    if query.startswith("{"):
        closing = query.find("}")
        if closing < 0:
            raise SearchError("the schema's { has no }")
        parts = [part.strip().strip('"') for part in query[1:closing].split(",")]
        if not parts or not parts[0]:
            raise SearchError("a schema starts with the namespace")
        namespace, dimensions = parts[0], frozenset(part for part in parts[1:] if part)
        query = query[closing + 1 :]
    terms: list[_Term] = []
    position = 0
    while position < len(query):
        match = _TOKEN.match(query, position)
        if match is None or match.end() == position:
            if not query[position:].strip():
                break
            raise SearchError(f"can't read the search terms from {query[position:]!r}")
        position = match.end()
        if match["paren"] or match["word"] in ("OR", "NOT"):
            raise SearchError("OR, NOT and parentheses in SEARCH are not supported locally")
        if match["word"] == "AND":
            continue
        if match["key"]:
            quoted = match["quoted"]
            terms.append(_Term(match["key"], quoted if quoted is not None else match["bare"], quoted is not None))
        elif match["phrase"] is not None:
            terms.append(_Term(None, match["phrase"], True))
        else:
            terms.append(_Term(None, match["word"], False))
    try:
        statistic = Statistic.parse(call["stat"])
    except ValueError as error:
        raise SearchError(str(error)) from None
    period = int(call["period"]) if call["period"] else None
    return Search(namespace, dimensions, tuple(terms), statistic, period)


def _term_matches(term: _Term, metric: MetricId) -> bool:
    if term.key is not None:
        if term.key == "Namespace":
            candidates = [metric.namespace]
        elif term.key == "MetricName":
            candidates = [metric.name]
        else:
            candidates = [value for name, value in metric.dimensions if name == term.key]
    else:
        candidates = [metric.namespace, metric.name, *(part for pair in metric.dimensions for part in pair)]
    if term.exact:
        return term.value in candidates
    wanted = term.value.lower()
    return any(wanted in candidate.lower() for candidate in candidates)
