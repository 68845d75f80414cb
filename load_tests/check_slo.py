"""Check a locust run against ``slo.json``; exit 1 on a breach, 2 when the reports can't be read.

Totals and percentiles come from locust's ``--json-file``, which holds every request of the run:
the CSV's final snapshot is written on a timer and can miss the last second. The CSV's own 95th
and 99th percentiles are shown beside them as a cross-check.

    python load_tests/check_slo.py --report load_tests/reports/run [--profile local] [--users 16]

``--report PREFIX`` reads ``PREFIX.json`` (``--json-file PREFIX``) and ``PREFIX_stats.csv``
(``--csv PREFIX``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

DEFAULT_SLO: Final = Path(__file__).with_name("slo.json")
INVALID_PREFIX: Final = "invalid: "
TOKEN_TYPE: Final = "TOKEN"  # noqa: S105 - the locustfile's request type for token fetches


class ReportError(Exception):
    """A report or SLO file that is missing or not what locust and this checker write."""


@dataclass(frozen=True)
class RouteStats:
    method: str
    name: str
    requests: int
    failures: int
    #: Response time (ms, as locust rounds it) -> count, over the whole run.
    histogram: dict[float, int]

    def percentile(self, fraction: float) -> float:
        """The response time ``fraction`` of requests finished within, computed as locust computes it."""
        allowed_above = int(self.requests * fraction)
        seen = 0
        for response_time in sorted(self.histogram, reverse=True):
            seen += self.histogram[response_time]
            if self.requests - seen <= allowed_above:
                return response_time
        return 0.0


@dataclass(frozen=True)
class Verdict:
    check: str
    observed: str
    limit: str
    ok: bool


def read_json_report(path: Path) -> list[RouteStats]:
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ReportError(f"cannot read the locust JSON report {path}: {error}") from None
    if not isinstance(entries, list):
        raise ReportError(f"{path} is not a locust --json-file report (expected a list of entries)")
    routes = []
    for entry in entries:
        try:
            histogram = {float(k): int(v) for k, v in entry["response_times"].items()}
            routes.append(
                RouteStats(
                    method=str(entry["method"]),
                    name=str(entry["name"]),
                    requests=int(entry["num_requests"]),
                    failures=int(entry["num_failures"]),
                    histogram=histogram,
                )
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ReportError(f"{path} has an entry that is not a locust stats entry: {entry!r:.200}") from None
    return routes


def read_csv_percentiles(path: Path) -> dict[tuple[str, str], tuple[str, str]]:
    """``(type, name) -> (95%, 99%)`` from locust's ``_stats.csv``; empty when there is none."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError:
        return {}
    return {(row.get("Type", ""), row.get("Name", "")): (row.get("95%", ""), row.get("99%", "")) for row in rows}


def load_profile(path: Path, profile: str) -> Mapping[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        chosen = document["profiles"][profile]
    except (OSError, ValueError) as error:
        raise ReportError(f"cannot read the SLO file {path}: {error}") from None
    except (KeyError, TypeError):
        raise ReportError(f"{path} has no profile {profile!r}") from None
    if not isinstance(chosen, dict) or not isinstance(chosen.get("routes"), dict):
        raise ReportError(f"profile {profile!r} in {path} has no 'routes' object")
    return chosen


def evaluate(routes: Sequence[RouteStats], slo: Mapping[str, Any], users: int | None = None) -> list[Verdict]:
    """Every check of the SLO profile against the run, in a stable order."""
    verdicts: list[Verdict] = []
    calls = [r for r in routes if r.method != TOKEN_TYPE]
    tokens = [r for r in routes if r.method == TOKEN_TYPE]
    total = sum(r.requests for r in routes)
    failed = sum(r.failures for r in routes)
    rate = failed / total if total else 1.0
    limit = float(slo.get("max_error_rate", 0.0))
    verdicts.append(
        Verdict(
            "error rate (all requests)",
            f"{rate:.4%} ({failed}/{total})",
            f"<= {limit:.4%}",
            total > 0 and rate <= limit,
        )
    )

    by_name = {r.name: r for r in calls}
    minimum = int(slo.get("min_requests_per_route", 1))
    for name, limits in slo["routes"].items():
        route = by_name.get(name)
        if route is None or route.requests < minimum:
            seen = 0 if route is None else route.requests
            verdicts.append(Verdict(f"{name}: requests", str(seen), f">= {minimum}", False))
            continue
        for key, fraction in (("p95_ms", 0.95), ("p99_ms", 0.99)):
            if key in limits:
                observed = route.percentile(fraction)
                verdicts.append(
                    Verdict(f"{name}: {key[:3]}", f"{observed:g} ms", f"<= {limits[key]:g} ms", observed <= limits[key])
                )

    invalid = [r for r in calls if r.name.startswith(INVALID_PREFIX)]
    invalid_total = sum(r.requests for r in invalid)
    invalid_failed = sum(r.failures for r in invalid)
    needed = int(slo.get("min_invalid_requests", 1))
    verdicts.append(Verdict("invalid requests sent", str(invalid_total), f">= {needed}", invalid_total >= needed))
    verdicts.append(Verdict("invalid requests with the wrong status", str(invalid_failed), "== 0", invalid_failed == 0))

    per_user = slo.get("max_token_fetches_per_user")
    if users is not None and per_user is not None:
        fetched = sum(r.requests for r in tokens)
        allowed = users * int(per_user)
        verdicts.append(Verdict("token fetches (never per request)", str(fetched), f"<= {allowed}", fetched <= allowed))
    return verdicts


def render(routes: Sequence[RouteStats], csv_percentiles: Mapping[tuple[str, str], tuple[str, str]]) -> str:
    width = max([len(r.name) for r in routes] + [20])
    lines = [f"{'type':<6} {'name':<{width}} {'requests':>9} {'fails':>6} {'p95':>6} {'p99':>6}  csv p95/p99"]
    for route in sorted(routes, key=lambda r: (r.method, r.name)):
        csv95, csv99 = csv_percentiles.get((route.method, route.name), ("-", "-"))
        lines.append(
            f"{route.method:<6} {route.name:<{width}} {route.requests:>9} {route.failures:>6} "
            f"{route.percentile(0.95):>6g} {route.percentile(0.99):>6g}  {csv95 or '-'}/{csv99 or '-'}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--report", type=Path, required=True, help="the prefix given to --json-file and --csv")
    parser.add_argument("--slo", type=Path, default=DEFAULT_SLO, help="the SLO file (default: slo.json beside this)")
    parser.add_argument("--profile", default="local", help="the SLO profile: local or deployed (default: local)")
    parser.add_argument("--users", type=int, default=None, help="users in the run, for the token-fetch budget")
    args = parser.parse_args(argv)
    prefix = str(args.report)
    try:
        slo = load_profile(args.slo, args.profile)
        routes = read_json_report(Path(prefix + ".json"))
    except ReportError as error:
        print(f"check_slo: {error}", file=sys.stderr)
        return 2
    print(render(routes, read_csv_percentiles(Path(prefix + "_stats.csv"))))
    print()
    verdicts = evaluate(routes, slo, args.users)
    width = max(len(v.check) for v in verdicts)
    for verdict in verdicts:
        mark = "ok  " if verdict.ok else "FAIL"
        print(f"{mark} {verdict.check:<{width}}  {verdict.observed:>24}  {verdict.limit}")
    breaches = [v for v in verdicts if not v.ok]
    print(f"\nSLO profile {args.profile!r}: " + (f"{len(breaches)} breach(es)" if breaches else "met"))
    return 1 if breaches else 0


if __name__ == "__main__":
    sys.exit(main())
