"""Does an answer match the manifest's golden answer, and the model metadata the manifest describes?

The same rule as ``onnx_lambda_tools.export.golden.infer_response_difference``, in the standard library:
names, datatypes and shapes must be equal, and every number within ``atol``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def infer_mismatches(expected: Mapping[str, Any], actual: Mapping[str, Any], atol: float) -> list[str]:
    """Open Inference Protocol v2 responses: what differs, or an empty list when they agree."""
    problems = [
        f"{key}: expected {expected.get(key)!r}, got {actual.get(key)!r}"
        for key in ("model_name", "model_version", "id")
        if expected.get(key) != actual.get(key)
    ]
    expected_outputs = _by_name(expected.get("outputs"))
    actual_outputs = _by_name(actual.get("outputs"))
    if expected_outputs.keys() != actual_outputs.keys():
        return [*problems, f"outputs: expected {sorted(expected_outputs)}, got {sorted(actual_outputs)}"]
    for name, want in expected_outputs.items():
        got = actual_outputs[name]
        for key in ("datatype", "shape"):
            if want.get(key) != got.get(key):
                problems.append(f"output {name!r} {key}: expected {want.get(key)}, got {got.get(key)}")
        problems.extend(_values(f"output {name!r}", want.get("data"), got.get("data"), atol))
    return problems


def embeddings_mismatches(expected: Mapping[str, Any], actual: Mapping[str, Any], atol: float) -> list[str]:
    """OpenAI embeddings responses (float encoding): model, indexes and vectors."""
    problems = []
    if expected.get("model") != actual.get("model"):
        problems.append(f"model: expected {expected.get('model')!r}, got {actual.get('model')!r}")
    want: list[Any] = list(expected.get("data") or [])
    got: list[Any] = actual["data"] if isinstance(actual.get("data"), list) else []
    if len(want) != len(got):
        return [*problems, f"data: expected {len(want)} embeddings, got {len(got)}"]
    for want_item, got_item in zip(want, got, strict=True):
        index = want_item.get("index")
        if not isinstance(got_item, Mapping) or got_item.get("index") != index:
            problems.append(f"data: expected index {index}, got {got_item!r:.80}")
            continue
        problems.extend(_values(f"embedding {index}", want_item.get("embedding"), got_item.get("embedding"), atol))
    return problems


def metadata_mismatches(manifest: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    """``GET /v2/models/{name}`` (Open Inference Protocol model metadata) against the manifest it serves."""
    problems = []
    if actual.get("name") != manifest.get("name"):
        problems.append(f"name: expected {manifest.get('name')!r}, got {actual.get('name')!r}")
    versions = actual.get("versions")
    if not isinstance(versions, list) or str(manifest.get("version")) not in versions:
        problems.append(f"versions: expected {manifest.get('version')!r} among them, got {versions!r}")
    if manifest.get("platform") and actual.get("platform") != manifest.get("platform"):
        problems.append(f"platform: expected {manifest.get('platform')!r}, got {actual.get('platform')!r}")
    for kind in ("inputs", "outputs"):
        want, got = _by_name(manifest.get(kind)), _by_name(actual.get(kind))
        if want.keys() != got.keys():
            problems.append(f"{kind}: expected {sorted(want)}, got {sorted(got)}")
            continue
        for name, spec in want.items():
            for key in ("datatype", "shape"):
                if spec.get(key) != got[name].get(key):
                    problems.append(f"{kind[:-1]} {name!r} {key}: expected {spec.get(key)}, got {got[name].get(key)}")
    return problems


def _by_name(tensors: object) -> dict[str, Mapping[str, Any]]:
    if not isinstance(tensors, list):
        return {}
    return {str(t.get("name")): t for t in tensors if isinstance(t, Mapping)}


def _values(what: str, want: object, got: object, atol: float) -> list[str]:
    want_flat, got_flat = _flatten(want), _flatten(got)
    if len(want_flat) != len(got_flat):
        return [f"{what}: expected {len(want_flat)} values, got {len(got_flat)}"]
    worst, worst_at = 0.0, -1
    for index, (w, g) in enumerate(zip(want_flat, got_flat, strict=True)):
        if w == g:
            continue
        if _is_number(w) and _is_number(g):
            difference = abs(float(w) - float(g))
            if math.isnan(difference) and not (math.isnan(float(w)) and math.isnan(float(g))):
                return [f"{what}[{index}]: expected {w}, got {g}"]
            if difference > worst:
                worst, worst_at = difference, index
        elif w != g:
            return [f"{what}[{index}]: expected {w!r:.40}, got {g!r:.40}"]
    if worst > atol:
        return [f"{what}[{worst_at}]: off by {worst:.3g}, more than atol {atol:g}"]
    return []


def _flatten(data: object) -> list[Any]:
    # Open Inference Protocol allows flat or nested data; compare the row-major values.
    if not isinstance(data, Sequence) or isinstance(data, str | bytes):
        return [data]
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item) if isinstance(item, list) else [item])
    return flat


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
