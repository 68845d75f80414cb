"""The price book: ``prices.json`` read into typed values, so a missing or misspelt price fails loudly.

Prices live in one data file with a source, a date and a confidence for each, and nowhere else: the
model never writes a dollar figure in code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal

Confidence = Literal["aws", "third-party", "unconfirmed"]
_CONFIDENCES: Final = ("aws", "third-party", "unconfirmed")


class PriceBookError(Exception):
    """The price file is missing a price or has one in the wrong shape; the message names it."""


@dataclass(frozen=True)
class Tier:
    #: The tier covers usage up to this many units a month (None: everything above the previous tier).
    up_to: float | None
    usd: float


@dataclass(frozen=True)
class Price:
    key: str
    usd: float
    per: str
    source: str
    checked: str
    confidence: Confidence
    note: str
    tiers: tuple[Tier, ...] = ()
    extra: Mapping[str, Any] | None = None

    def tiered(self, quantity: float) -> float:
        """The charge for ``quantity`` units, walking the volume tiers when there are any."""
        if not self.tiers:
            return quantity * self.usd
        charge, floor = 0.0, 0.0
        for tier in self.tiers:
            ceiling = quantity if tier.up_to is None else min(quantity, tier.up_to)
            if ceiling > floor:
                charge += (ceiling - floor) * tier.usd
            if tier.up_to is None or quantity <= tier.up_to:
                break
            floor = tier.up_to
        return charge


@dataclass(frozen=True)
class Fact:
    key: str
    source: str
    checked: str
    confidence: Confidence
    note: str


@dataclass(frozen=True)
class PriceBook:
    region: str
    currency: str
    about: str
    prices: Mapping[str, Price]
    facts: Mapping[str, Fact]

    def __getitem__(self, key: str) -> Price:
        try:
            return self.prices[key]
        except KeyError:
            raise PriceBookError(f"the price file has no price {key!r}") from None

    def fact(self, key: str) -> Fact:
        try:
            return self.facts[key]
        except KeyError:
            raise PriceBookError(f"the price file has no fact {key!r}") from None

    def sagemaker_instances(self) -> Sequence[str]:
        prefix = "sagemaker.ml."
        return sorted(key.removeprefix("sagemaker.") for key in self.prices if key.startswith(prefix))


def default_price_file() -> Path:
    return Path(str(resources.files("onnx_lambda_tools.cost") / "prices.json"))


def load_prices(path: Path | None = None) -> PriceBook:
    path = path or default_price_file()
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise PriceBookError(f"cannot read the price file {path}: {error}") from None
    try:
        prices = {key: _price(key, entry) for key, entry in document["prices"].items()}
        facts = {key: _fact(key, entry) for key, entry in document.get("facts", {}).items()}
        return PriceBook(str(document["region"]), str(document["currency"]), str(document["about"]), prices, facts)
    except (KeyError, TypeError, AttributeError) as error:
        raise PriceBookError(f"the price file {path} is malformed: missing {error}") from None


def _confidence(key: str, value: Any) -> Confidence:
    if value not in _CONFIDENCES:
        raise PriceBookError(f"{key}: confidence must be one of {_CONFIDENCES}, got {value!r}")
    confidence: Confidence = value
    return confidence


def _price(key: str, entry: Mapping[str, Any]) -> Price:
    usd = entry["usd"]
    if not isinstance(usd, int | float) or usd < 0:
        raise PriceBookError(f"{key}: usd must be a non-negative number, got {usd!r}")
    tiers = tuple(
        Tier(None if t["up_to"] is None else float(t["up_to"]), float(t["usd"])) for t in entry.get("tiers", ())
    )
    known = {"usd", "per", "source", "checked", "confidence", "note", "tiers"}
    return Price(
        key=key,
        usd=float(usd),
        per=str(entry["per"]),
        source=str(entry["source"]),
        checked=str(entry["checked"]),
        confidence=_confidence(key, entry["confidence"]),
        note=str(entry["note"]),
        tiers=tiers,
        extra={k: v for k, v in entry.items() if k not in known} or None,
    )


def _fact(key: str, entry: Mapping[str, Any]) -> Fact:
    return Fact(
        key=key,
        source=str(entry["source"]),
        checked=str(entry["checked"]),
        confidence=_confidence(key, entry["confidence"]),
        note=str(entry["note"]),
    )
