"""Calibration text for int8 smoothing: what the activations look like on the kind of input the service sees.

Deliberately disjoint from the parity corpus in ``tests/models``, so the parity test measures the int8 model
on text it was not tuned on. Short and long, several scripts, emoji, numbers, code: the activation ranges
that matter come from the odd inputs as much as from plain English.
"""

# ruff: noqa: RUF001 - text in other scripts on purpose: look-alike letters and full-width punctuation included

from __future__ import annotations

CALIBRATION_TEXTS: tuple[str, ...] = (
    "Search engines rank documents by their relevance to a query.",
    "The weather in Lisbon is mild in winter and warm in summer.",
    "Please confirm your appointment for Tuesday at 10 am.",
    "The algorithm runs in linear time and constant extra space.",
    "Thank you!",
    "hi",
    "OK",
    "",
    "Yes, please.",
    "What's the return policy for electronics bought online?",
    "Neural networks learn representations directly from data.",
    "A dog runs across the park chasing a red ball.",
    "The contract terminates on December 31 unless renewed in writing.",
    "My laptop won't turn on after the update, what should I try?",
    "Shipping to Canada usually takes five to seven business days.",
    "The orchestra rehearsed the second movement twice.",
    "Vaccines train the immune system to recognise a pathogen.",
    "GREAT PRODUCT, FAST DELIVERY",
    "terrible. would not buy again",
    "Bonjour à tous, et bienvenue à la conférence.",
    "Wie spät ist es bitte?",
    "¿Cómo estás? Muy bien, gracias.",
    "Привет! Как дела?",
    "今天天气很好，我们去公园散步吧。",
    "こんにちは、元気ですか？",
    "감사합니다",
    "شكرا جزيلا",
    "धन्यवाद",
    "Γειά σου κόσμε",
    "😊 see you soon",
    "🎉🎉",
    "Order 66 shipped on 2023-01-05 for $12.50 (incl. VAT).",
    "Call 0800 123 456 between 9:00 and 17:30.",
    "pi ≈ 3.1416, e ≈ 2.7183",
    "SELECT name, total FROM orders ORDER BY total DESC LIMIT 10;",
    "https://docs.example.org/guide/install#linux",
    "def main() -> None: print('hello')",
    "?!",
    "...",
    "Roses are red, violets are blue.",
    "The history of Rome spans more than two thousand years, from a small settlement on the Tiber to an "
    "empire that reached from Britain to Mesopotamia, and its laws, roads and language shaped Europe. " * 4,
)
