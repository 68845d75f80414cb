"""onnxruntime's threads and spinning, chosen from the CPU quota the function actually has.

The quota is read the way the kernel publishes it (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), in a
directory laid out like /sys/fs/cgroup; Lambda's share (MemorySize/1769) stands in where no quota shows.
The rule's expected values are the measured table in docs/performance.md ("Session options under
Lambda's CPU quota"), not the rule's own output.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from onnx_lambda.config import ThreadPlan, available_cpus, cpu_budget, plan_threads


def cgroup(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "115800 100000\n"}, 1.158),  # docker run --cpus 1.158 (2048 MB)
        ({"cpu.max": "57900 100000\n"}, 0.579),  # 1024 MB
        ({"cpu/cpu.cfs_quota_us": "170000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1.7),  # cgroup v1, 3008 MB
    ],
    ids=["v2-2048", "v2-1024", "v1-3008"],
)
def test_the_cgroup_quota_is_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str], expected: float
) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", raising=False)
    assert cpu_budget(cgroup(tmp_path, files)) == pytest.approx(min(expected, available_cpus()))


@pytest.mark.parametrize(
    "files",
    [{"cpu.max": "max 100000\n"}, {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, {}],
    ids=["v2-unlimited", "v1-unlimited", "no-cgroup"],
)
def test_without_a_quota_lambdas_share_of_its_memory_is_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str]
) -> None:
    root = cgroup(tmp_path, files)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
    assert cpu_budget(root) == pytest.approx(1024 / 1769)
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    assert cpu_budget(root) == available_cpus()  # neither: the CPUs it may run on


def test_a_quota_larger_than_the_visible_cpus_is_capped(tmp_path: Path) -> None:
    root = cgroup(tmp_path, {"cpu.max": f"{(available_cpus() + 3) * 100000} 100000\n"})
    assert cpu_budget(root) == available_cpus()


@pytest.mark.parametrize("text", ["garbage", "100000", ""])
def test_an_unreadable_quota_is_no_quota(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", raising=False)
    assert cpu_budget(cgroup(tmp_path, {"cpu.max": text})) == available_cpus()


#: Lambda memory size -> (its vCPU share, the threads and spinning that measured fastest there).
MEASURED = {
    1024: ThreadPlan(1, False),
    1769: ThreadPlan(1, True),
    2048: ThreadPlan(1, True),
    3008: ThreadPlan(2, True),
    4096: ThreadPlan(2, True),
}


@pytest.mark.parametrize("memory_mb", sorted(MEASURED))
def test_the_rule_picks_what_measured_fastest_under_each_quota(memory_mb: int) -> None:
    assert plan_threads(memory_mb / 1769, cores=2) == MEASURED[memory_mb]


def test_a_fixed_thread_count_still_gets_the_spinning_rule() -> None:
    assert plan_threads(0.58, cores=2, threads=2) == ThreadPlan(2, False)
    assert plan_threads(2.0, cores=2, threads=2) == ThreadPlan(2, True)
