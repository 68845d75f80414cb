"""``make mutation``: mutmut over the request path's modules, and a per-module record of what it found.

mutmut (configured in pyproject's ``[tool.mutmut]``) copies ``src/`` and the tests to ``mutants/``
(gitignored), rewrites every function of the modules below into a set of mutants, and reruns, for each
mutant, only the selected tests that call the mutated function. A mutant that no test notices has
*survived*: a behaviour the tests don't pin down.

This runner starts from an empty ``mutants/`` (so each record describes the tests as they are, never a
cache of an earlier run), links ``models/`` into it for the tests that load the real models, runs mutmut
on the chosen modules, and writes ``mutation/results/<date>[-label].json``: the counts per module and the
name of every mutant that was not killed (``mutmut show <name>`` prints its diff while ``mutants/`` is
there). docs/testing.md says which survivors are left on purpose and why.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

#: The modules ``make mutation`` covers (``src/onnx_lambda/<name>.py``), as pyproject's ``only_mutate`` names them.
MODULES = ("auth", "protocol", "inference", "handler")
#: mutmut's verdicts, in the order a record lists them.
STATUSES = (
    "killed",
    "survived",
    "timeout",
    "no tests",
    "suspicious",
    "segfault",
    "skipped",
    "caught by type check",
    "not checked",
)
WORK_DIR = Path("mutants")
RESULTS_DIR = Path("mutation/results")
#: A line of ``mutmut results --all true``: ``    onnx_lambda.protocol.x__split__mutmut_3: survived``.
RESULT_LINE = re.compile(r"^\s*onnx_lambda\.(?P<module>\w+)\.(?P<mutant>\S+): (?P<status>.+?)\s*$")


def parse_results(text: str) -> dict[str, dict[str, str]]:
    """``mutmut results --all true`` as ``{module: {mutant name: status}}``; other lines are ignored."""
    by_module: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        match = RESULT_LINE.match(line)
        if match:
            name = f"onnx_lambda.{match['module']}.{match['mutant']}"
            by_module.setdefault(match["module"], {})[name] = match["status"]
    return by_module


def summarize(results: Mapping[str, Mapping[str, str]], modules: Iterable[str]) -> dict[str, Any]:
    """Counts per module (every status in :data:`STATUSES`, plus any other mutmut reports) and the mutants
    not killed, by module."""
    counts: dict[str, dict[str, int]] = {}
    not_killed: dict[str, list[str]] = {}
    for module in modules:
        statuses = results.get(module, {})
        tally = Counter(statuses.values())
        counts[module] = {status: tally.get(status, 0) for status in STATUSES}
        counts[module].update({status: n for status, n in tally.items() if status not in STATUSES})
        counts[module]["total"] = len(statuses)
        not_killed[module] = sorted(name for name, status in statuses.items() if status != "killed")
    return {"counts": counts, "not_killed": not_killed}


def table(counts: Mapping[str, Mapping[str, int]]) -> str:
    """The counts as the Markdown table docs/testing.md shows."""
    columns = ("killed", "survived", "timeout", "no tests", "total")
    lines = ["| module | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for module, row in counts.items():
        lines.append(f"| {module}.py | " + " | ".join(str(row.get(column, 0)) for column in columns) + " |")
    return "\n".join(lines)


def prepare(root: Path) -> None:
    """An empty ``mutants/`` with ``models/`` linked in (tests find the models beside their own copy)."""
    work = root / WORK_DIR
    if work.is_symlink() or work.is_file():
        raise SystemExit(f"{work} is not a directory mutmut may use")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    (work / "models").symlink_to(Path("..") / "models", target_is_directory=True)


def run_mutmut(root: Path, modules: Sequence[str], log_path: Path) -> float:
    """mutmut on every mutant of ``modules``; its (long, spinner-laden) output goes to ``log_path``."""
    mutmut = Path(sys.executable).with_name("mutmut")
    if not mutmut.exists():
        raise SystemExit("mutmut is not installed in this virtualenv: `make mutation` installs the mutation extra")
    patterns = [f"onnx_lambda.{module}.*" for module in modules]
    started = time.monotonic()
    with log_path.open("w") as log:
        completed = subprocess.run(  # noqa: S603 - our own virtualenv's mutmut, fixed arguments
            [str(mutmut), "run", *patterns],
            cwd=root,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if completed.returncode != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise SystemExit(f"mutmut run failed (exit {completed.returncode}); the end of {log_path}:\n{tail}")
    return time.monotonic() - started


def read_results(root: Path) -> dict[str, dict[str, str]]:
    completed = subprocess.run(  # noqa: S603 - our own virtualenv's mutmut, fixed arguments
        [str(Path(sys.executable).with_name("mutmut")), "results", "--all", "true"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return parse_results(completed.stdout)


def git_commit(root: Path) -> str | None:
    completed = subprocess.run(
        ["git", "rev-parse", "HEAD"],  # noqa: S607  # nosec B607  # git from PATH, as every developer runs it
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    return completed.stdout.strip() or None


def mutmut_version() -> str:
    from importlib.metadata import version

    return version("mutmut")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m onnx_lambda_tools.mutation", description=__doc__)
    parser.add_argument(
        "modules",
        nargs="*",
        default=list(MODULES),
        help=f"which of {', '.join(MODULES)} to mutate (default: all)",
    )
    parser.add_argument("--label", default="", help="appended to the record's name: <date>-<label>.json")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the repository (default: here)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.modules) - set(MODULES))
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}: choose from {', '.join(MODULES)}")
    if args.label and not re.fullmatch(r"[\w.-]+", args.label):
        parser.error("--label: letters, digits, '.', '-' and '_' only")
    modules = [module for module in MODULES if module in args.modules]
    root: Path = args.root.resolve()

    prepare(root)
    log_path = root / WORK_DIR / "run.log"
    print(f"mutmut run on {', '.join(modules)}: the log is {log_path.relative_to(root)}", flush=True)
    seconds = run_mutmut(root, modules, log_path)
    summary = summarize(read_results(root), modules)

    record = {
        "date": datetime.date.today().isoformat(),
        "label": args.label or None,
        "commit": git_commit(root),
        "tool": f"mutmut {mutmut_version()}",
        "python": platform.python_version(),
        "cpus": len(os.sched_getaffinity(0)),
        "seconds": round(seconds),
        **summary,
    }
    name = record["date"] + (f"-{args.label}" if args.label else "") + ".json"
    out = root / RESULTS_DIR / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(table(summary["counts"]))
    print(f"{round(seconds)} s; written to {out.relative_to(root)}; `mutmut show <name>` in {root} shows a mutant")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
