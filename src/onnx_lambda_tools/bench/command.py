"""``onnx-lambda bench``: run every path against its raw reference, print the ratios, record the run.

Sections, each in the process layout that makes its comparison fair:

* ``embeddings``, ``oip``, ``runtime``, ``options``: one worker process holding the Lambda handler and
  the raw sessions (:mod:`onnx_lambda_tools.bench.inprocess`);
* ``http``: two server processes and one client (:mod:`onnx_lambda_tools.bench.http_path`);
* ``coldstart`` (and memory): fresh processes from exec (:mod:`onnx_lambda_tools.bench.coldstart`);
* ``image``: ``pip install --target`` of the runtime dependencies (:mod:`onnx_lambda_tools.bench.image`);
* ``container``: the built image under Docker with Lambda's limits (:mod:`onnx_lambda_tools.bench.container`);
* ``cold-container``: cold start and memory in that image under the quota, against bare processes in the same
  image (:mod:`onnx_lambda_tools.bench.cold_container`).

A section that fails is reported and the others still run; the exit status is then 1, as it is with
``--check`` when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SECTIONS = ("embeddings", "oip", "runtime", "options", "http", "coldstart", "image", "container", "cold-container")
INT8_MODEL = "all-minilm-l6-v2"


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a short smoke run: small samples, no pip download")
    parser.add_argument("--models-dir", type=Path, default=Path("models"), help="built models (default: models)")
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="where <date>.json goes (default: bench/results; bench/results/quick with --quick)",
    )
    parser.add_argument(
        "--docs",
        type=Path,
        default=None,
        help="Markdown file to update (default: docs/performance.md; none if --quick)",
    )
    parser.add_argument("--no-docs", action="store_true", help="don't update the Markdown file")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)"
    )
    parser.add_argument("--seconds", type=float, default=None, help="seconds per comparison (default 6; quick 0.5)")
    parser.add_argument("--cold-starts", type=int, default=None, help="fresh processes per side (default 7; quick 1)")
    parser.add_argument(
        "--image-requirements",
        type=Path,
        default=Path("requirements/runtime.txt"),
        help="what the image installs: the hash-pinned lock (default, as the Dockerfile does) or pyproject.toml",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--profile-dir", type=Path, default=None, help="also write pyinstrument profiles of a cold start here"
    )


def bench_command(args: argparse.Namespace) -> int:
    from onnx_lambda.config import available_cpus, cpu_budget, plan_threads
    from onnx_lambda_tools.bench import report

    sections = tuple(s.strip() for s in args.sections.split(",") if s.strip())
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        print(f"error: unknown sections {unknown}; choose from {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    for name in (INT8_MODEL, "all-minilm-l6-v2-fp32", "breast-cancer-classifier"):
        if not (args.models_dir / name / "manifest.json").is_file():
            print(f"error: {args.models_dir / name} has no manifest.json; run `make model`", file=sys.stderr)
            return 2
    seconds = args.seconds if args.seconds is not None else (0.5 if args.quick else 6.0)
    cold_starts = args.cold_starts if args.cold_starts is not None else (1 if args.quick else 7)
    # The service's own session options, unless this shell overrides them as a deployment could.
    threads = int(os.environ.get("ONNX_LAMBDA_INTRA_OP_THREADS") or 0)
    optimization = os.environ.get("ONNX_LAMBDA_GRAPH_OPTIMIZATION", "")
    plan = plan_threads(cpu_budget(), available_cpus(), threads=threads or None)
    started = time.monotonic()
    now = datetime.now(UTC)
    document: dict[str, Any] = {
        "schema": report.SCHEMA_VERSION,
        "date": now.strftime("%Y-%m-%d"),
        "started_at": now.isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": report.machine(),
        "settings": {
            "threads": plan.threads,
            "spinning": plan.spinning,
            "graph_optimization": optimization or "all",
            "seconds_per_comparison": seconds,
            "cold_start_repetitions": cold_starts,
            "sections": list(sections),
        },
        "comparisons": [],
        "errors": {},
    }
    with tempfile.TemporaryDirectory(prefix="onnx-lambda-bench-") as scratch_name:
        scratch = Path(scratch_name)
        inprocess = [s for s in sections if s in ("embeddings", "oip", "runtime", "options")]
        if inprocess:
            _section(
                document,
                "in-process",
                lambda: _inprocess(document, args.models_dir, scratch, inprocess, seconds, threads, optimization),
            )
        if "http" in sections or "coldstart" in sections:
            _section(
                document,
                "local stack",
                lambda: _with_stack(
                    document,
                    args.models_dir,
                    scratch,
                    sections,
                    seconds,
                    cold_starts,
                    threads,
                    optimization,
                    args.profile_dir,
                ),
            )
        if "image" in sections:
            from onnx_lambda_tools.bench import image

            _section(
                document,
                "image",
                lambda: document.__setitem__(
                    "image", image.measure(args.image_requirements, args.models_dir, use_pip=not args.quick)
                ),
            )
    if "container" in sections:
        from onnx_lambda_tools.bench import container

        _section(
            document,
            "container",
            lambda: document.__setitem__(
                "container",
                container.measure(args.models_dir, cold_starts=cold_starts, warm_requests=20 if args.quick else 300),
            ),
        )
    if "cold-container" in sections:
        from onnx_lambda_tools.bench import cold_container

        _section(
            document,
            "cold-container",
            lambda: document.__setitem__(
                "cold_container", cold_container.measure(args.models_dir, INT8_MODEL, repetitions=cold_starts)
            ),
        )
    document["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    document["duration_seconds"] = round(time.monotonic() - started, 1)
    document["targets"] = [target.as_dict() for target in report.targets(document)]
    print(report.console(document))
    # Quick runs stay out of bench/results, where `onnx-lambda cost` looks for the newest full run.
    out_dir = args.out_dir or (Path("bench/results/quick") if args.quick else Path("bench/results"))
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{document['date']}{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwrote {out}", file=sys.stderr)
    docs = None if args.no_docs else (args.docs or (None if args.quick else Path("docs/performance.md")))
    if docs is not None:
        report.write_docs(docs, document)
        print(f"updated {docs}", file=sys.stderr)
    missed = [t["name"] for t in document["targets"] if t["passed"] is False]
    if document["errors"]:
        return 1
    return 1 if args.check and missed else 0


def _section(document: dict[str, Any], name: str, run: Any) -> None:
    print(f"[bench] {name} ...", file=sys.stderr)
    try:
        run()
    except Exception as error:  # a failed section is reported; the others still run
        document["errors"][name] = f"{type(error).__name__}: {error}"
        traceback.print_exc()


def _inprocess(
    document: dict[str, Any],
    models_dir: Path,
    scratch: Path,
    sections: list[str],
    seconds: float,
    threads: int,
    optimization: str,
) -> None:

    config = scratch / "inprocess-config.json"
    out = scratch / "inprocess-out.json"
    config.write_text(
        json.dumps(
            {
                "models_dir": str(models_dir.resolve()),
                "seconds": seconds,
                "sections": sections,
                "threads": threads,
                "optimization": optimization,
            }
        )
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("ONNX_LAMBDA_", "POWERTOOLS_"))}
    subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-m", "onnx_lambda_tools.bench.inprocess", str(config), str(out)],
        env=environment,
        check=True,
        timeout=900,
    )
    result = json.loads(out.read_text())
    document["comparisons"] += result["comparisons"]
    document["reference"] = result["reference"]
    # What the handler chose in the worker, which is what the in-process ratios compare.
    session = result["handler_session"]
    document["settings"].update(
        threads=session["threads"], spinning=session["spinning"], graph_optimization=session["level"]
    )
    if "session_options" in result:
        document["session_options"] = result["session_options"]


def _with_stack(
    document: dict[str, Any],
    models_dir: Path,
    scratch: Path,
    sections: tuple[str, ...],
    seconds: float,
    cold_starts: int,
    threads: int,
    optimization: str,
    profile_dir: Path | None,
) -> None:
    from onnx_lambda_tools.bench import coldstart, http_path
    from onnx_lambda_tools.local.cloud import free_port
    from onnx_lambda_tools.serve import local_deployment
    from onnx_lambda_tools.tokens import dev_user_token

    state_path = scratch / "local-stack.json"
    with local_deployment(models_dir, (INT8_MODEL,), port=free_port(), state_path=state_path) as deployment:
        token = dev_user_token(deployment.stack, use_cache=False)
        if "http" in sections:
            try:
                document["comparisons"] += http_path.measure(
                    deployment,
                    token,
                    models_dir,
                    INT8_MODEL,
                    scratch,
                    seconds=seconds,
                    threads=threads,
                    optimization=optimization,
                    reference=document.get("reference", {}).get("best_one"),
                )
            except Exception as error:
                document["errors"]["http"] = f"{type(error).__name__}: {error}"
                traceback.print_exc()
        if "coldstart" in sections:
            document["cold_start"] = coldstart.measure(deployment, models_dir, INT8_MODEL, cold_starts, profile_dir)
