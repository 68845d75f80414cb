"""pip-audit on the image's pinned requirements, honest about whether it could check anything.

pip-audit asks a vulnerability database about every pinned release: PyPI's JSON API (per release) by
default, else OSV. Where neither answers (an offline machine, or a package index that mirrors only the
simple API), pip-audit still exits 0 and prints "No known vulnerabilities found" while it skipped every
package. This wrapper tells the cases apart:

* a known vulnerability in any pinned release: exit 1, listing each with its fixed versions;
* every package audited and none vulnerable: exit 0;
* no database reachable (every package skipped as not found, or a connection error): say so plainly,
  name the services tried, exit 0 (SECURITY.md explains why this is tolerated and what covers it);
* anything else (a partial audit, a pip-audit crash): exit 1, because that is not the known case.

    .venv/bin/python scripts/audit_requirements.py requirements/runtime.txt
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

#: Text pip-audit (via requests/urllib3) prints when it cannot reach a vulnerability service.
UNREACHABLE_SIGNS: Final = (
    "ConnectionError",
    "NameResolutionError",
    "Max retries exceeded",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "timed out",
    "ProxyError",
    "SSLError",
)
NOT_FOUND_SKIP: Final = "not found on PyPI"
SERVICES: Final = ("pypi", "osv")


def run_pip_audit(requirements: Path, service: str, timeout: int) -> tuple[int, dict[str, Any] | None, str]:
    command = [
        sys.executable,
        "-m",
        "pip_audit",
        "--requirement",
        str(requirements),
        "--require-hashes",
        "--disable-pip",
        "--vulnerability-service",
        service,
        "--timeout",
        str(timeout),
        "--progress-spinner",
        "off",
        "--format",
        "json",
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 - fixed argv
    try:
        document = json.loads(completed.stdout) if completed.stdout.strip() else None
    except json.JSONDecodeError:
        document = None
    return completed.returncode, document, completed.stderr


def vulnerabilities(document: dict[str, Any]) -> list[str]:
    found = []
    for dependency in document.get("dependencies", []):
        for vulnerability in dependency.get("vulns", []):
            fixes = ", ".join(vulnerability.get("fix_versions", [])) or "no fixed release yet"
            found.append(f"{dependency['name']} {dependency.get('version')}: {vulnerability['id']} (fixed in {fixes})")
    return found


def skipped(document: dict[str, Any]) -> tuple[int, int]:
    """(packages skipped because the service doesn't know the release, packages in all)."""
    dependencies = document.get("dependencies", [])
    return sum(NOT_FOUND_SKIP in dependency.get("skip_reason", "") for dependency in dependencies), len(dependencies)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("requirements", type=Path, nargs="+", help="hash-pinned requirement files")
    parser.add_argument("--timeout", type=int, default=15, help="seconds per request to the service (default 15)")
    args = parser.parse_args(argv)

    status = 0
    for requirements in args.requirements:
        unreachable: list[str] = []
        for service in SERVICES:
            code, document, stderr = run_pip_audit(requirements, service, args.timeout)
            if document is None:
                if any(sign in stderr for sign in UNREACHABLE_SIGNS):
                    unreachable.append(f"{service}: unreachable ({stderr.strip().splitlines()[-1][:200]})")
                    continue
                print(f"pip-audit failed on {requirements} ({service}, exit {code}):\n{stderr}", file=sys.stderr)
                return 1
            found = vulnerabilities(document)
            if found:
                print(f"pip-audit: known vulnerabilities in {requirements}:", file=sys.stderr)
                for line in found:
                    print(f"  {line}", file=sys.stderr)
                status = 1
                break
            not_found, total = skipped(document)
            if not_found == 0 and total:
                print(f"pip-audit: {requirements}: {total} pinned releases audited ({service}), none vulnerable")
                break
            if not_found == total:
                unreachable.append(f"{service}: answered for none of the {total} pinned releases")
                continue
            print(
                f"pip-audit: {requirements}: {service} knew {total - not_found} of {total} pinned releases; "
                "a partial audit is not the known offline case, so it fails",
                file=sys.stderr,
            )
            return 1
        else:
            print(
                f"pip-audit could NOT check {requirements}: no vulnerability database was reachable from here "
                f"({'; '.join(unreachable)}). Nothing was audited; see SECURITY.md, 'Dependencies'."
            )
    return status


if __name__ == "__main__":
    sys.exit(main())
