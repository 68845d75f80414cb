"""Cold start and memory in the function's container under Lambda's limits, against two bare processes.

Every side runs in a fresh container of the function's image under the template's MemorySize (memory
cap, MemorySize/1769 vCPU as a CFS quota, read-only root, a tmpfs /tmp, Lambda's sandbox uid), on the
network where the local S3 runs, and is timed from ``exec`` inside it by :mod:`cold_probe`:

* ``ours``: the image's runtime (``awslambdaric`` and the handler), with the template's environment, the
  model from the local S3 into an empty /tmp, pinned as ``publish`` prints it (so model.optimized.onnx
  when the manifest lists one, with OptimizedModelVersionId), and tracing on as deployed (``Tracing: Active``);
* ``file``: a bare process that loads the same model from a file and answers one sentence;
* ``s3``: a bare process that first fetches the same pinned objects from the same S3 with boto3.

The sides alternate (the order rotates every repetition), and the medians are reported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from onnx_lambda.manifest import read_manifest
from onnx_lambda_tools.bench import workloads
from onnx_lambda_tools.local import containers, sam_local
from onnx_lambda_tools.publish import PublishedModel, models_variable

SIDES: Final = ("ours", "file", "s3")
PROBE: Final = Path(__file__).with_name("cold_probe.py")
STAGES: Final = Path(__file__).with_name("init_stages.py")
_PROBE_IN_CONTAINER: Final = "/opt/bench/cold_probe.py"
_STAGES_IN_CONTAINER: Final = "/opt/bench/init_stages.py"
#: Fresh containers of ``init_stages.py``, whose medians make the stage table.
STAGE_REPETITIONS: Final = 3
_MODEL_IN_CONTAINER: Final = "/opt/model"
#: The image's runtime, as its CMD names the handler.
_HANDLER: Final = "onnx_lambda.handler.lambda_handler"


def template_environment() -> dict[str, str]:
    """The inference function's variables as the template sets them, parameters at their defaults."""
    from onnx_lambda_tools.local.emulator.routes import load_http_api

    return dict(load_http_api(containers.ROOT / "template.yaml").functions[sam_local.FUNCTION].environment)


def reference_options() -> dict[str, Any]:
    """The bare processes' session options: onnxruntime's own defaults (what a new user writes).

    ``ONNX_LAMBDA_BENCH_REFERENCE_OPTIONS`` (JSON: graph_optimization, intra_op_threads, allow_spinning)
    replaces them, e.g. with the fastest options the ``options`` section found.
    """
    configured = os.environ.get("ONNX_LAMBDA_BENCH_REFERENCE_OPTIONS")
    return json.loads(configured) if configured else {"graph_optimization": "all"}


def specs(published: PublishedModel, models_dir: Path, model: str, endpoint: str) -> dict[str, dict[str, Any]]:
    manifest = read_manifest(models_dir / model)
    tokenizer_file = manifest.tokenizer.file if manifest.tokenizer else "tokenizer.json"
    prefix = published.key.rsplit("/", 1)[0]
    bare = {
        "text": workloads.SHORT_SENTENCE,
        "max_length": manifest.tokenizer.max_length if manifest.tokenizer else 256,
        **reference_options(),
    }
    return {
        "ours": {"handler": _HANDLER, "events": [workloads.embeddings_event(model, workloads.SHORT_SENTENCE)]},
        "file": {
            **bare,
            "model_path": f"{_MODEL_IN_CONTAINER}/model.onnx",
            "tokenizer_path": f"{_MODEL_IN_CONTAINER}/{tokenizer_file}",
        },
        "s3": {
            **bare,
            "endpoint_url": endpoint,
            "bucket": published.bucket,
            # The portable model.onnx, as a new user's process would load it, never the optimized copy.
            "objects": {
                "model": [published.key, published.version_id],
                "tokenizer": [f"{prefix}/{tokenizer_file}", published.tokenizer_version_id],
            },
        },
    }


def run_once(
    image: str,
    side: str,
    spec: Mapping[str, Any],
    environment: Mapping[str, str],
    limits: containers.LambdaLimits,
    model_dir: Path,
    name: str,
) -> dict[str, Any]:
    """One fresh container, one cold start of ``side``; the probe's JSON."""
    result: dict[str, Any] = _in_container(
        image,
        [_PROBE_IN_CONTAINER, side, json.dumps(spec)],
        environment,
        limits,
        model_dir,
        name,
        f"the {side} cold start",
    )
    if side == "ours" and any(status != 200 for status in result["statuses"]):
        raise RuntimeError(f"ours answered {result['statuses']}")
    return result


def init_stages(
    image: str, environment: Mapping[str, str], limits: containers.LambdaLimits, model_dir: Path, name: str
) -> list[list[Any]]:
    """The function's init stage by stage (:mod:`init_stages`), medians of fresh containers under the quota."""
    script_environment = {
        **environment,
        "PYTHONPATH": f"{environment.get('LAMBDA_TASK_ROOT', '/var/task')}:/var/runtime",
    }
    runs = [
        _in_container(
            image,
            [_STAGES_IN_CONTAINER, _MODEL_IN_CONTAINER],
            script_environment,
            limits,
            model_dir,
            f"{name}-{i}",
            "the init stages",
        )
        for i in range(STAGE_REPETITIONS)
    ]
    return [
        [
            stage[0],
            round(float(np.median([run[i][1] for run in runs])), 1),
            round(float(np.median([run[i][2] for run in runs])), 1),
            stage[3],
        ]
        for i, stage in enumerate(runs[0])
    ]


def _in_container(
    image: str,
    arguments: Sequence[str],
    environment: Mapping[str, str],
    limits: containers.LambdaLimits,
    model_dir: Path,
    name: str,
    what: str,
) -> Any:
    """Run a bench script in a fresh container of the image under ``limits``; the JSON of its last line."""
    env_arguments = [argument for key, value in environment.items() for argument in ("-e", f"{key}={value}")]
    command = [
        "docker", "run", "--rm", "--name", name, "--network", containers.NETWORK,
        *limits.docker_arguments(), *env_arguments,
        "-v", f"{PROBE}:{_PROBE_IN_CONTAINER}:ro",
        "-v", f"{STAGES}:{_STAGES_IN_CONTAINER}:ro",
        "-v", f"{model_dir.resolve()}:{_MODEL_IN_CONTAINER}:ro",
        "--entrypoint", "/var/lang/bin/python3",
        image, *arguments,
    ]  # fmt: skip
    completed = subprocess.run(  # noqa: S603 - the docker client, argv built here
        command, capture_output=True, text=True, timeout=180, check=False, env={**os.environ, **containers.DOCKER_ENV}
    )
    if completed.returncode != 0:
        containers.docker("rm", "-f", name, check=False)
        raise RuntimeError(f"{what} failed: {(completed.stderr or completed.stdout)[-2500:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _order(repetition: int) -> Sequence[str]:
    shift = repetition % len(SIDES)
    return SIDES[shift:] + SIDES[:shift]


def summarize(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    def median(values: Sequence[float]) -> float:
        return round(float(np.median(np.asarray(values, dtype=float))), 1)

    summary: dict[str, Any] = {
        "init_ms": median([run["init_ms"] for run in runs]),
        "first_response_ms": median([run["first_response_ms"] for run in runs]),
        "init_all_ms": [round(run["init_ms"], 1) for run in runs],
        "first_response_all_ms": [round(run["first_response_ms"], 1) for run in runs],
        "rss_after_init_mib": median([run["at_init"]["rss_mib"] for run in runs]),
        "peak_rss_after_init_mib": median([run["at_init"]["peak_mib"] for run in runs]),
        "cpu_at_init_ms": median([run["at_init"]["cpu_ms"] for run in runs]),
    }
    stages = [run.get("xray_stages_ms") or {} for run in runs]
    names = sorted({name for stage in stages for name in stage})
    if names:
        summary["xray_stages_ms"] = {name: median([stage[name] for stage in stages if name in stage]) for name in names}
        summary["xray_datagrams"] = int(np.median([run.get("xray_datagrams", 0) for run in runs]))
    return summary


def measure(
    models_dir: Path,
    model: str,
    *,
    repetitions: int,
    image: str | None = None,
    memory_mb: int | None = None,
    sides: Sequence[str] = SIDES,
    name_prefix: str | None = None,
) -> dict[str, Any]:
    """Median Init, first response and RSS after init of each side, from ``repetitions`` fresh containers each."""
    image = image or containers.build_image()
    endpoints = containers.ensure_moto_container(containers.DEFAULT_MOTO_HOST_PORT)
    _, published = sam_local.publish_models(endpoints, models_dir)
    source = next(item for item in published if item.name == model)
    memory_mb = memory_mb or sam_local.template_memory_size()
    limits = containers.LambdaLimits(memory_mb)
    variables = {
        **template_environment(),
        "ONNX_LAMBDA_MODELS": models_variable([source.source()]),
        "ONNX_LAMBDA_S3_ENDPOINT_URL": endpoints.network_url,
    }
    environment = containers.function_environment(variables, memory_mb)
    all_specs = specs(source, models_dir, model, endpoints.network_url)
    prefix = name_prefix or f"onnx-lambda-cold-{os.getpid()}"
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    for repetition in range(repetitions):
        for side in _order(repetition):
            if side not in runs:
                continue
            result = run_once(
                image, side, all_specs[side], environment, limits, models_dir / model, f"{prefix}-{side}-{repetition}"
            )
            runs[side].append(result)
        shown = "   ".join(
            f"{side} {runs[side][-1]['init_ms']:5.0f}/{runs[side][-1]['first_response_ms']:5.0f} ms" for side in runs
        )
        print(f"  cold start in the container #{repetition + 1}: {shown}", file=sys.stderr)
    document: dict[str, Any] = {
        "model": model,
        "repetitions": repetitions,
        "memory_mb": memory_mb,
        "cpus": limits.cpus,
        "reference_options": reference_options(),
        "tracing": "Active (LAMBDA_TASK_ROOT set, a sampled trace header, X-Ray UDP to a local sink)",
        "sides": {side: summarize(side_runs) for side, side_runs in runs.items()},
    }
    sides_summary = document["sides"]
    if "ours" in sides_summary:
        document["init_stages"] = init_stages(image, environment, limits, models_dir / model, f"{prefix}-stages")
        for reference in ("file", "s3"):
            if reference in sides_summary:
                ours, ref = sides_summary["ours"], sides_summary[reference]
                document[f"ratios_vs_{reference}"] = {
                    "init": round(ours["init_ms"] / ref["init_ms"], 3),
                    "first_response": round(ours["first_response_ms"] / ref["first_response_ms"], 3),
                    "rss_after_init": round(ours["rss_after_init_mib"] / ref["rss_after_init_mib"], 3),
                    "cpu_at_init": round(ours["cpu_at_init_ms"] / ref["cpu_at_init_ms"], 3),
                }
    return document


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m onnx_lambda_tools.bench.cold_container``: this section alone, for before/after tables."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--model", default="all-minilm-l6-v2")
    parser.add_argument("--repetitions", type=int, default=7)
    parser.add_argument("--image", default=None, help="an image tag (default: build onnx-lambda:local)")
    parser.add_argument("--memory-mb", type=int, default=None)
    parser.add_argument("--sides", default=",".join(SIDES))
    args = parser.parse_args(argv)
    document = measure(
        args.models_dir,
        args.model,
        repetitions=args.repetitions,
        image=args.image,
        memory_mb=args.memory_mb,
        sides=[side for side in args.sides.split(",") if side],
    )
    print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
