"""schemathesis against the running local server's own OpenAPI document, with a real local token.

Every operation is fuzzed with data that fits the schema and data that doesn't. Path parameters are
often swapped for the names and versions the server really serves, so the cases get past the 404 to
the decoding, validation and inference behind it. Every response must be a documented status with a
body that matches the documented schema, never a 5xx, never a stack trace, and fast on these small inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.servers import LocalService

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

#: Cases per operation and generation mode; operations without parameters run out of distinct cases sooner.
EXAMPLES = 90
MINIMUM_CASES = 1_000
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@dataclass
class FuzzRun:
    """What one run did: cases sent per operation, and the failures found (one per operation and mode)."""

    cases: dict[str, int] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.cases.values())


@pytest.fixture(scope="module")
def served(local_service: LocalService) -> dict[str, list[str]]:
    """Each served model's name and its versions, as the server lists them."""
    headers = local_service.headers()
    names = [card["id"] for card in httpx.get(f"{local_service.url}/v1/models", headers=headers).json()["data"]]
    assert names, "the local server lists no models"
    return {
        name: httpx.get(f"{local_service.url}/v2/models/{name}", headers=headers).json()["versions"] for name in names
    }


def _authorizations(token: str) -> st.SearchStrategy[str | None]:
    """Mostly the real token; sometimes none, a forged one or another scheme, so the 401 path is fuzzed too."""
    return st.sampled_from([f"Bearer {token}"] * 12 + [None, "Bearer not.a.jwt", "Basic dXNlcjpwYXNz"])


def _fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    base_url: str,
    token: str,
    served: dict[str, list[str]],
    session: requests.Session,
    run: FuzzRun,
) -> None:
    label = f"{operation.label} ({mode.value})"
    names = sorted(served)
    real_model = st.one_of(st.none(), st.sampled_from(names))

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.target, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(case=operation.as_strategy(generation_mode=mode), model=real_model, authorization=_authorizations(token))
    def fuzz(case: Any, model: str | None, authorization: str | None) -> None:
        parameters = case.path_parameters
        if model is not None and parameters is not None and "model_name" in parameters:
            parameters["model_name"] = model
            if "model_version" in parameters:
                parameters["model_version"] = served[model][0]
        headers = {"authorization": authorization} if authorization is not None else {}
        response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
        run.cases[label] = run.cases.get(label, 0) + 1
        run.statuses[response.status_code] = run.statuses.get(response.status_code, 0) + 1
        case.validate_response(response, checks=CHECKS, headers=headers)
        assert b"Traceback" not in response.content, response.content[:500]

    try:
        fuzz()
    except (AssertionError, FailureGroup) as failure:
        run.failures.append(f"{label}: {failure}")
    except Unsatisfiable:  # an operation without parameters has no negative cases
        assert mode is GenerationMode.NEGATIVE, label


def test_the_openapi_schema_fuzzes_clean(local_service: LocalService, served: dict[str, list[str]]) -> None:
    schema = schemathesis.openapi.from_url(f"{local_service.url}/openapi.json")
    results = list(schema.get_all_operations())
    assert all(isinstance(result, Ok) for result in results), results
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == 12, [operation.label for operation in operations]
    run = FuzzRun()
    with requests.Session() as session:
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _fuzz_operation(operation, mode, local_service.url, local_service.token, served, session, run)
    assert not run.failures, "\n\n".join(run.failures)
    assert run.total >= MINIMUM_CASES, run.cases
    # The swapped-in names must have reached the models: successes and refusals of real requests alike.
    assert run.statuses.get(200, 0) > 50, run.statuses
    assert run.statuses.get(400, 0) > 50, run.statuses
    print(f"schemathesis: {run.total} cases, statuses {dict(sorted(run.statuses.items()))}")


def _document(local_service: LocalService) -> dict[str, Any]:
    response = httpx.get(f"{local_service.url}/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def _refs(node: Any, found: Callable[[str], None]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found(value)
            else:
                _refs(value, found)
    elif isinstance(node, list):
        for item in node:
            _refs(item, found)


def test_regression_every_schema_reference_resolves(local_service: LocalService) -> None:
    """Found by the fuzzer: the infer body referred to a RequestedOutput that components didn't hold."""
    document = _document(local_service)
    refs: set[str] = set()
    _refs(document, refs.add)
    schemas = document["components"]["schemas"]
    assert "#/components/schemas/RequestedOutput" in refs
    missing = sorted(ref for ref in refs if ref.removeprefix("#/components/schemas/") not in schemas)
    assert not missing


def test_regression_openai_routes_document_openai_errors(local_service: LocalService) -> None:
    """Found by the fuzzer: /v1/ errors are OpenAI's error object, but were documented as {"error": str}."""
    document = _document(local_service)
    for path, method in (("/v1/embeddings", "post"), ("/v1/models", "get")):
        for status in ("400", "401"):
            if status not in document["paths"][path][method]["responses"]:
                continue
            schema = document["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/OpenAIErrorBody"}, (path, status, schema)
    response = httpx.post(f"{local_service.url}/v1/embeddings", headers=local_service.headers(), json={})
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
