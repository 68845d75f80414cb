"""The HTTP API as ``template.yaml`` declares it: routes, their authorizer and scopes, and the functions.

Routes come from the ``HttpApi`` events of ``AWS::Serverless::Function`` resources; an event without
``Auth.Authorizer`` uses the API's ``DefaultAuthorizer``, and ``Authorizer: NONE`` opens the route.
Matching follows API Gateway's rules for HTTP APIs: the most specific route wins (literal segments
over ``{param}`` over ``{proxy+}``, an exact method over ``ANY``), and ``$default`` takes what's left.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import unquote

from onnx_lambda_tools.local.cloudformation import NO_VALUE, Evaluator, Unresolved, load_template

DEFAULT_ROUTE: Final = "$default"
#: API Gateway HTTP API's integration timeout, and its maximum.
MAX_INTEGRATION_TIMEOUT_SECONDS: Final = 30.0
_FUNCTION_TYPES = frozenset({"AWS::Serverless::Function"})
_IMPLICIT_HTTP_API = "ServerlessHttpApi"


@dataclass(frozen=True, slots=True)
class Route:
    """One route: ``GET /v2/models/{model_name}`` or ``$default``, and who may call it."""

    method: str  # "GET", "POST", ..., "ANY"; "" for $default
    path: str  # "/v2/models/{model_name}" or "$default"
    function: str  # the function's logical id
    authorizer: str | None  # None: no authorizer (health routes)
    scopes: tuple[str, ...] = ()
    integration_timeout_seconds: float = MAX_INTEGRATION_TIMEOUT_SECONDS
    _segments: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        segments = () if self.path == DEFAULT_ROUTE else tuple(self.path.strip("/").split("/"))
        object.__setattr__(self, "_segments", tuple(s for s in segments if s))

    @property
    def key(self) -> str:
        """The ``routeKey`` API Gateway puts in the event."""
        return DEFAULT_ROUTE if self.path == DEFAULT_ROUTE else f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The path parameters when this route takes ``method path``; ``None`` otherwise."""
        if self.path == DEFAULT_ROUTE:
            return {}
        if self.method not in ("ANY", method.upper()):
            return None
        parts = [unquote(part) for part in path.strip("/").split("/") if part]
        parameters: dict[str, str] = {}
        for index, segment in enumerate(self._segments):
            if segment.startswith("{") and segment.endswith("+}"):
                rest = parts[index:]
                if not rest:
                    return None
                parameters[segment[1:-2]] = "/".join(rest)
                return parameters
            if index >= len(parts):
                return None
            if segment.startswith("{") and segment.endswith("}"):
                parameters[segment[1:-1]] = parts[index]
            elif segment != parts[index]:
                return None
        return parameters if len(parts) == len(self._segments) else None

    def specificity(self) -> tuple[int, int, int, int]:
        """Larger is more specific: no greedy variable, more literal segments, more segments, exact method."""
        if self.path == DEFAULT_ROUTE:
            return (-1, 0, 0, 0)
        greedy = any(s.endswith("+}") for s in self._segments)
        literal = sum(1 for s in self._segments if not s.startswith("{"))
        return (0 if greedy else 1, literal, len(self._segments), 0 if self.method == "ANY" else 1)


@dataclass(frozen=True, slots=True)
class RouteMatch:
    route: Route
    path_parameters: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """What an execution environment of one function needs: the template's settings, resolved."""

    logical_id: str
    function_name: str
    package_type: str  # "Image" or "Zip"
    handler: str | None  # Zip functions only; an image runs its Dockerfile's CMD
    dockerfile: str | None  # Image functions: the Dockerfile, relative to the template (Metadata)
    memory_mb: int
    timeout_seconds: int
    environment: Mapping[str, str]
    #: Variables whose value exists only in a deployed stack (bucket names, ARNs, ...): supply them.
    unresolved_environment: tuple[str, ...]
    reserved_concurrency: int | None


@dataclass(frozen=True, slots=True)
class HttpApi:
    routes: tuple[Route, ...]
    functions: Mapping[str, FunctionSpec]

    def match(self, method: str, path: str) -> RouteMatch | None:
        """The most specific route for ``method path``, as API Gateway picks it."""
        best: RouteMatch | None = None
        for route in self.routes:
            parameters = route.match(method, path)
            if parameters is None:
                continue
            if best is None or route.specificity() > best.route.specificity():
                best = RouteMatch(route, MappingProxyType(parameters))
        return best


def load_http_api(template_path: Path, parameters: Mapping[str, str] | None = None) -> HttpApi:
    """Every HttpApi route in the template, and the functions behind them."""
    template = load_template(template_path)
    evaluator = Evaluator(template, parameters)
    resources: dict[str, Any] = template["Resources"]
    globals_function = (template.get("Globals") or {}).get("Function") or {}
    globals_api = (template.get("Globals") or {}).get("HttpApi") or {}
    routes: list[Route] = []
    functions: dict[str, FunctionSpec] = {}
    for logical_id, resource in resources.items():
        if not isinstance(resource, dict) or resource.get("Type") not in _FUNCTION_TYPES:
            continue
        if "Condition" in resource and not evaluator.condition(resource["Condition"]):
            continue
        properties = resource.get("Properties") or {}
        events = properties.get("Events") or {}
        api_events = [e.get("Properties") or {} for e in events.values() if e.get("Type") == "HttpApi"]
        if not api_events:
            continue
        spec = _function_spec(logical_id, properties, globals_function, evaluator, resource.get("Metadata") or {})
        functions[logical_id] = spec
        for event in api_events:
            routes.append(_route(logical_id, event, resources, globals_api, evaluator))
    keys = [route.key for route in routes]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"{template_path} declares these routes more than once: {', '.join(duplicates)}")
    return HttpApi(tuple(routes), MappingProxyType(functions))


def _route(
    function: str,
    event: Mapping[str, Any],
    resources: Mapping[str, Any],
    globals_api: Mapping[str, Any],
    evaluator: Evaluator,
) -> Route:
    method = str(evaluator.evaluate(event.get("Method", ""))).upper()
    path = str(evaluator.evaluate(event.get("Path", "")))
    if not method and not path:
        method, path = "", DEFAULT_ROUTE
    elif not path.startswith("/") or not method:
        raise ValueError(f"{function}: an HttpApi event needs both Method and Path, got {method!r} {path!r}")
    if method == "X-AMAZON-APIGATEWAY-ANY-METHOD" or method == "*":
        method = "ANY"
    api_auth = _api_auth(event.get("ApiId"), resources, globals_api)
    auth = evaluator.evaluate(event.get("Auth") or {})
    authorizer = auth.get("Authorizer", evaluator.evaluate(api_auth.get("DefaultAuthorizer")))
    scopes: Any = auth.get("AuthorizationScopes")
    if authorizer in (None, "NONE"):
        authorizer, scopes = None, ()
    elif scopes is None:
        definition = (api_auth.get("Authorizers") or {}).get(authorizer)
        if definition is None:
            raise ValueError(f"{function}: {method} {path} uses the undeclared authorizer {authorizer!r}")
        scopes = evaluator.evaluate(definition.get("AuthorizationScopes") or [])
    timeout_ms = evaluator.evaluate(event.get("TimeoutInMillis", MAX_INTEGRATION_TIMEOUT_SECONDS * 1000))
    timeout = min(float(timeout_ms) / 1000, MAX_INTEGRATION_TIMEOUT_SECONDS)
    return Route(method, path, function, authorizer, tuple(str(s) for s in scopes), timeout)


def _api_auth(api_id: Any, resources: Mapping[str, Any], globals_api: Mapping[str, Any]) -> Mapping[str, Any]:
    """The Auth block of the API an event attaches to (the implicit API takes Globals.HttpApi)."""
    name = api_id.get("Ref") if isinstance(api_id, dict) else None
    if name is None or name == _IMPLICIT_HTTP_API:
        properties: Mapping[str, Any] = globals_api
    else:
        resource = resources.get(name)
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::Serverless::HttpApi":
            raise ValueError(f"ApiId {name!r} is not an AWS::Serverless::HttpApi in this template")
        properties = resource.get("Properties") or {}
    auth = properties.get("Auth") or {}
    return auth if isinstance(auth, dict) else {}


def _function_spec(
    logical_id: str,
    properties: Mapping[str, Any],
    globals_function: Mapping[str, Any],
    evaluator: Evaluator,
    metadata: Mapping[str, Any],
) -> FunctionSpec:
    def setting(name: str, default: Any) -> Any:
        value = properties.get(name, globals_function.get(name, default))
        try:
            resolved = evaluator.evaluate(value)
        except Unresolved:
            return default
        return default if resolved is None or resolved is NO_VALUE else resolved

    variables = {
        **((globals_function.get("Environment") or {}).get("Variables") or {}),
        **((properties.get("Environment") or {}).get("Variables") or {}),
    }
    environment: dict[str, str] = {}
    unresolved: list[str] = []
    for name, value in variables.items():
        try:
            resolved = evaluator.evaluate(value)
        except Unresolved:
            unresolved.append(name)
            continue
        if resolved is NO_VALUE:
            continue
        environment[name] = ",".join(resolved) if isinstance(resolved, list) else _text(resolved)
    reserved = setting("ReservedConcurrentExecutions", None)
    name = setting("FunctionName", None)
    timeout = float(setting("Timeout", 3))
    package_type = str(setting("PackageType", "Zip"))
    dockerfile = None
    if package_type == "Image":
        dockerfile = str(Path(str(metadata.get("DockerContext", "."))) / str(metadata.get("Dockerfile", "Dockerfile")))
    return FunctionSpec(
        logical_id=logical_id,
        function_name=str(name) if name else f"{evaluator.ref('AWS::StackName')}-{logical_id}",
        package_type=package_type,
        handler=str(setting("Handler", "")) or None,
        dockerfile=dockerfile,
        memory_mb=int(setting("MemorySize", 128)),
        timeout_seconds=max(1, math.ceil(timeout)),
        environment=MappingProxyType(environment),
        unresolved_environment=tuple(unresolved),
        reserved_concurrency=int(reserved) if reserved is not None else None,
    )


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
