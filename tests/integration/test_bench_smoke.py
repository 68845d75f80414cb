"""`onnx-lambda bench --quick` end to end: every section runs, and the JSON report has the shape others read.

No timing is asserted: the numbers depend on the machine and on what else runs on it. What must hold
is that each path was measured against its raw reference, that every summary is a set of positive
latencies, and that the targets, the cold-start stages, the image weight and the docs block are there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from onnx_lambda_tools.bench import report
from onnx_lambda_tools.local import sam_local

ROOT = Path(__file__).resolve().parents[2]
SUMMARY_KEYS = {"calls", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput", "items_per_second"}
EXPECTED_CASES = {
    ("embeddings", f"{precision} {case}")
    for precision in ("int8", "fp32")
    for case in ("short sentence", "128-token text", "batch of 32")
} | {
    ("oip-infer", "1 row"),
    ("oip-infer", "1000 rows"),
    ("oip-infer", "1000 rows (binary)"),
    ("lambda-runtime", "int8 short sentence"),
    ("http", "concurrency 1"),
    ("http", "concurrency 8"),
}


@pytest.fixture(scope="module")
def bench_run(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, str]:
    out = tmp_path_factory.mktemp("bench")
    docs = out / "performance.md"
    docs.write_text("# Performance\n\nProse that the bench must keep.\n")
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "onnx_lambda_tools.cli",
            "bench",
            "--quick",
            "--models-dir",
            str(models_dir),
            "--out-dir",
            str(out),
            "--docs",
            str(docs),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    reports = sorted(out.glob("*-quick.json"))
    assert len(reports) == 1, list(out.iterdir())
    return json.loads(reports[0].read_text()), completed.stdout, docs.read_text()


def _check_summary(summary: dict[str, Any]) -> None:
    assert set(summary) == SUMMARY_KEYS
    assert summary["calls"] > 0
    assert 0 < summary["p50_ms"] <= summary["p90_ms"] <= summary["p99_ms"]
    assert summary["throughput"] > 0
    assert summary["items_per_second"] >= summary["throughput"]


def test_every_path_is_compared_with_its_raw_reference(bench_run: tuple[dict[str, Any], str, str]) -> None:
    document, _, _ = bench_run
    assert document["errors"] == {}
    assert document["schema"] == report.SCHEMA_VERSION
    assert document["quick"] is True
    cases = {(item["group"], item["case"]) for item in document["comparisons"]}
    assert cases == EXPECTED_CASES
    for item in document["comparisons"]:
        _check_summary(item["raw"])
        _check_summary(item["ours"])
        assert item["ratio_p50"] == pytest.approx(item["ours"]["p50_ms"] / item["raw"]["p50_ms"], rel=1e-2)
        assert item["delta_p50_ms"] == pytest.approx(item["ours"]["p50_ms"] - item["raw"]["p50_ms"], abs=1e-3)


def test_machine_and_settings_are_recorded(bench_run: tuple[dict[str, Any], str, str]) -> None:
    document, _, _ = bench_run
    machine = document["machine"]
    for key in ("cpus", "cpu_model", "python", "onnxruntime", "load_average_start", "load_average_end"):
        assert machine[key], key
    assert document["settings"]["threads"] >= 1
    assert document["settings"]["graph_optimization"] in ("disable", "basic", "extended", "all")


def test_cold_start_memory_and_image(bench_run: tuple[dict[str, Any], str, str]) -> None:
    document, _, _ = bench_run
    cold = document["cold_start"]
    assert set(cold["raw"]["stages_ms"]) == {"interpreter", "imports", "session", "tokenizer", "first_run"}
    assert {"interpreter", "imports", "fetch", "hash", "session", "tokenizer", "first_run"} <= set(
        cold["ours"]["stages_ms"]
    )
    for side in ("raw", "ours"):
        assert cold[side]["total_ms"] > 0
        assert cold[side]["rss_after_init_mib"] > 0
        assert cold[side]["rss_after_batch_mib"] >= cold[side]["rss_after_init_mib"] * 0.9
    image = document["image"]
    assert image["runtime_mb"] > 0
    # The base image's AWS SDK is never counted as ours, whatever the source (lock or pyproject) lists.
    assert not {"boto3", "botocore"} & set(image["largest_mb"])
    assert "onnxruntime" in image["largest_mb"]
    # The built image under Lambda's limits: its figures come from the emulator's own REPORT lines and the
    # container's cgroup, so each is present and consistent with the others.
    box = document["container"]
    assert box["image_mb"] > box["added_to_base_mb"] > 0
    assert box["init_duration_ms"] > 0
    assert box["first_request_ms"] >= box["duration_p50_ms"] > 0
    assert box["warm_p99_ms"] >= box["warm_p50_ms"] > 0
    assert box["peak_mib"] >= box["rss_mib"] > 0
    assert "The image under Lambda's limits" in bench_run[2]
    options = document["session_options"]
    assert set(options["create_seconds"]) >= {"disable", "basic", "extended", "all"}
    # The raw reference is the grid's fastest entry, never the service's own options.
    grid = document["reference"]
    assert options["grid"] == grid
    assert set(grid["levels"]) == {"disable", "basic", "extended", "all"}
    cores = grid["visible_cores"]
    assert {(entry["threads"], entry["spinning"]) for entry in grid["threads"].values()} == {
        (threads, spinning) for threads in range(1, cores + 1) for spinning in (True, False)
    }
    fastest = min(grid["threads"].values(), key=lambda entry: entry["one_p50_ms"])
    assert {key: grid["best_one"][key] for key in ("threads", "spinning", "level")} == {
        "threads": fastest["threads"],
        "spinning": fastest["spinning"],
        "level": grid["best_level"],
    }


def test_targets_table_and_docs(bench_run: tuple[dict[str, Any], str, str]) -> None:
    document, stdout, docs = bench_run
    names = [target["name"] for target in document["targets"]]
    assert len(names) == 8
    for target in document["targets"]:
        assert target["value"] is not None, target["name"]
        assert target["passed"] in (True, False)
        assert target["relation"] in ("<=", ">=")
    for name in names:
        assert name in stdout
    assert "Prose that the bench must keep." in docs
    assert docs.count(report.DOCS_BEGIN) == 1
    assert docs.count(report.DOCS_END) == 1
    assert "int8 batch of 32" in docs


def test_cold_start_in_the_container_against_both_bare_processes(bench_run: tuple[dict[str, Any], str, str]) -> None:
    """Ours and the two bare processes, each in a fresh container of the image under the template's quota."""
    document, stdout, docs = bench_run
    box = document["cold_container"]
    memory_mb = sam_local.template_memory_size()
    assert box["memory_mb"] == memory_mb
    assert box["cpus"] == pytest.approx(memory_mb / 1769, abs=1e-3)
    assert set(box["sides"]) == {"ours", "file", "s3"}
    for side in box["sides"].values():
        assert 0 < side["init_ms"] <= side["first_response_ms"]
        assert side["rss_after_init_mib"] > 0
        assert side["cpu_at_init_ms"] >= 0
    # Tracing runs as deployed: the SDK sent the init stages and the handler's subsegment over UDP.
    assert {"model fetch", "session create", "lambda_handler"} <= set(box["sides"]["ours"]["xray_stages_ms"])
    for reference in ("file", "s3"):
        ratios = box[f"ratios_vs_{reference}"]
        ours, bare = box["sides"]["ours"], box["sides"][reference]
        first = ours["first_response_ms"] / bare["first_response_ms"]
        rss = ours["rss_after_init_mib"] / bare["rss_after_init_mib"]
        assert (ratios["first_response"], ratios["rss_after_init"]) == (
            pytest.approx(first, rel=1e-2),
            pytest.approx(rss, rel=1e-2),
        )
    targets = {target["name"]: target for target in document["targets"]}
    cold = next(target for name, target in targets.items() if name.startswith("cold start in the container"))
    assert cold["value"] == box["ratios_vs_file"]["first_response"]
    assert "Cold start in the function's container" in docs
    assert "bare process, model from S3 with boto3" in stdout
    # The init stage by stage, in the image: the session is the file the function loads, and the stages
    # the bare process doesn't pay are the service's own (what the cold-start ratio is made of).
    stages = {name: (cpu, rss, shared) for name, cpu, rss, shared in box["init_stages"]}
    assert "the session, from the optimized copy" in stages
    assert all(cpu >= 0 and rss > 0 for cpu, rss, _ in stages.values())
    assert {name for name, (_, _, shared) in stages.items() if not shared} >= {
        "the runtime client (awslambdaric)",
        "pydantic",
        "the X-Ray SDK (Tracing: Active)",
    }
    assert "the service's own stages, in all" in stdout
