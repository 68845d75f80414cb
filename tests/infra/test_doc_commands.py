"""The shell commands of README.md and docs/operations.md: those that can run here run, exactly as printed.

Every command in a ``bash``/``sh``/``console`` block is either in ``RUN`` (run here as printed, in the
repository, with the PATH "Before you start" sets up) or matched by one entry of ``NOT_RUN`` with the
reason it can't run here and where else it is covered. A new command fails this test until it is put
in one of the two; an entry that no longer matches a command fails it too, so the lists stay true.

Those that need AWS can't run here; still, every `sam` and `onnx-lambda` command is parsed by the real
command-line parser (SAM CLI's click commands, with samconfig.toml loaded as `--config-env` does), so a
misspelt option or a missing environment fails here rather than on the first real deploy.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass

import pytest

from tests.infra.conftest import ROOT, SAM_PYTHON

DOCS = (ROOT / "README.md", ROOT / "docs" / "operations.md")
SHELL_BLOCKS = {"bash", "sh", "shell", "console"}
FENCE = re.compile(r"^```(?P<language>[\w-]*)\n(?P<body>.*?)^```", re.MULTILINE | re.DOTALL)
#: "Before you start": `source .venv/bin/activate` and `export PATH="$PWD/.venv-sam/bin:$PATH"`.
DOC_PATH = f"{ROOT / '.venv-sam' / 'bin'}{os.pathsep}{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"

#: Run here, exactly as printed (each must appear in the docs).
RUN = (
    "sam validate --lint --config-env dev",
    ".venv/bin/onnx-lambda invoke events/embeddings.json   # in-process, like `sam local invoke -e`",
    "source .venv/bin/activate          # onnx-lambda",
    'export PATH="$PWD/.venv-sam/bin:$PATH"   # sam',
    ".venv/bin/onnx-lambda cost --requests 50M --memory 3008 --architecture arm64 --cold-start-rate 0.002",
    "STACK=onnx-lambda-dev REGION=us-east-1",
    "STACK=onnx-lambda-dev",
    'out() { aws cloudformation describe-stacks --region "$REGION" --stack-name "$STACK" \\\n'
    "          --query \"Stacks[0].Outputs[?OutputKey=='$1'].OutputValue\" --output text; }",
    'output() { aws cloudformation describe-stacks --stack-name "$STACK" \\\n'
    "             --query \"Stacks[0].Outputs[?OutputKey=='$1'].OutputValue\" --output text; }",
    'boot() { aws cloudformation describe-stacks --region "$REGION" --stack-name onnx-lambda-bootstrap \\\n'
    "           --query \"Stacks[0].Outputs[?OutputKey=='$1'].OutputValue\" --output text; }",
    "export AWS_PROFILE=onnx-lambda-deployer",
    'overrides() { python -c \'import sys, tomllib; print(*tomllib.load(open("samconfig.toml", "rb"))'
    '[sys.argv[1]]["deploy"]["parameters"]["parameter_overrides"])\' "$1"; }',
)

AWS = "needs an AWS account (the development machines have none)"
DOCKER = "needs Docker and the SAM build image: tests/container/ runs it (make sam-build, make sam-invoke)"
MAKE_TEST = "part of `make test`, which runs this test"


@dataclass(frozen=True)
class NotRun:
    pattern: str  # matched against the start of the command
    reason: str


NEWCOMER = "tests/integration/test_newcomer_path.py"
NOT_RUN = (
    # --- AWS
    NotRun(r"sam deploy ", AWS),
    NotRun(r"sam delete ", AWS),
    NotRun(r"aws ", AWS),
    NotRun(
        r"(AWS_PROFILE=\S+ )?(\.venv/bin/)?onnx-lambda publish ",
        f"{AWS}: the stack's bucket, as its publisher role (tests/infra/test_publish_command.py)",
    ),
    NotRun(r"cat build/model-dev\.overrides", "prints what `onnx-lambda publish --write-overrides` wrote"),
    NotRun(
        r"(POOL|CLIENT_ID|FN|BUCKET|APP|GROUP|EXECUTION_ROLE)=\$\((out|output|boot|aws) ", f"{AWS}: reads the stack"
    ),
    NotRun(r"export ONNX_LAMBDA_(CLIENT_SECRET|TOKEN)=\$\(", f"{AWS}: reads the client secret or a token"),
    NotRun(r"TOKEN=\$\(onnx-lambda token --client-credentials", f"{AWS}: the stack's Cognito"),
    NotRun(r'curl -s "\$\(out ApiUrl\)', f"{AWS}: the deployed API"),
    NotRun(r'echo "\$\(out DashboardUrl\)"', f"{AWS}: reads the stack"),
    NotRun(r"python -c \"import boto3", f"{AWS}: empties the model bucket"),
    NotRun(r"\.venv/bin/locust .* --host \"\$\(output ApiUrl\)\"", f"{AWS}: the deployed API"),
    NotRun(
        r"\.venv/bin/python load_tests/check_slo\.py --report load_tests/reports/deployed", "reads that run's report"
    ),
    # --- Docker
    NotRun(r"sam build ", DOCKER),
    NotRun(r"sam local invoke ", DOCKER),
    NotRun(r"make (image|sam-build|sam-invoke)\b", f"{DOCKER}: tests/container/ runs the same commands"),
    NotRun(r"make sam-api\b", "a server until Ctrl-C: tests/container/test_sam_local_api.py drives it"),
    NotRun(r"make test-arm64\b", "`make test` runs the same tests (tests/container/test_arm64.py)"),
    # --- run elsewhere in `make test`, or a server, a long run, a generator of committed files
    NotRun(r"make venv sam-venv model\b", "installs the virtualenvs and models: `make test` depends on the same"),
    NotRun(r"make test(?![-\w])", "it is `make test`"),
    NotRun(r"make check-infra\b", "`make test` runs it before pytest"),
    NotRun(r"\.venv/bin/pytest tests/(infra|unit) -q", MAKE_TEST),
    NotRun(r"make (lint|typecheck|model)\b", "`make test` runs it (or depends on it)"),
    NotRun(r"make serve(?!-)\b", f"a server until Ctrl-C: {NEWCOMER} runs it and what it prints"),
    NotRun(
        r"(TOKEN=\$\(\.venv/bin/onnx-lambda token\)|curl -s http://127\.0\.0\.1:8000)",
        f"needs `make serve`, and the README abbreviates the data: {NEWCOMER} runs what the banner prints in full",
    ),
    NotRun(r"make serve-lambda\b", "a server until Ctrl-C: tests/integration/test_emulator.py drives the same stack"),
    NotRun(r"\.venv/bin/onnx-lambda package path/to/", "your own model's paths: tests/integration/test_package.py"),
    NotRun(r"ONNX_LAMBDA_MODELS=.*build/my-classifier", "needs what the placeholder `package` command writes"),
    NotRun(r"make load\b", "a minute or more: tests/integration/test_load_tests.py runs a short locust run"),
    NotRun(r"make demo\b", "a server until Ctrl-C: tests/dashboard/test_demo.py runs it faster, then stops"),
    NotRun(
        r"curl -s -X POST http://127\.0\.0\.1:8002/faults/",
        "needs `make demo` or `make serve-lambda` running: tests/dashboard/ arms the same fault switch",
    ),
    NotRun(r"make bench\b", "minutes of benchmarks: tests/integration/test_bench_smoke.py runs a quick one"),
    NotRun(
        r"make mutation\b",
        "about 25 minutes of mutants; its tests run in `make test`, and mutation/results/ records each run",
    ),
    NotRun(r"make cost\b", "rewrites docs/cost.md and docs/cost.png: tests/unit/test_cost.py checks they are current"),
    NotRun(
        r"make tune\b",
        "minutes of containers under each quota: tests/unit/test_tune.py checks what it computes",
    ),
    NotRun(r"make diagram\b", "rewrites docs/architecture.md: `make check-infra` checks it is current"),
    NotRun(r"\.venv/bin/python scripts/make_events\.py", "rewrites events/: tests/integration/test_handler_events.py"),
)


@dataclass(frozen=True)
class Command:
    doc: str
    text: str


def shell_commands(markdown: str) -> list[str]:
    """The commands of the shell blocks: continuation lines and multi-line quotes joined, comments and
    blank lines dropped, and in ``console`` blocks only what follows a ``$`` prompt."""
    commands = []
    for block in FENCE.finditer(markdown):
        console = block["language"] == "console"
        if block["language"] not in SHELL_BLOCKS:
            continue
        current: list[str] = []
        for line in block["body"].splitlines():
            if not current:
                if console:
                    if not line.startswith("$ "):
                        continue  # output
                    line = line[2:]
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
            current.append(line)
            text = "\n".join(current)
            if line.endswith("\\") or not _complete(text):
                continue
            commands.append(text)
            current = []
        assert not current, f"an unfinished command: {current}"
    return commands


def _complete(text: str) -> bool:
    try:
        shlex.split(text, comments=True)
    except ValueError:  # an open quote: the command goes on
        return False
    return True


def doc_commands() -> list[Command]:
    return [Command(doc.name, text) for doc in DOCS for text in shell_commands(doc.read_text())]


def reason_not_run(command: str) -> list[NotRun]:
    return [entry for entry in NOT_RUN if re.match(entry.pattern, command)]


def without_comment(command: str) -> str:
    """The command without a trailing comment, as the shell sees it."""
    return shlex.join(shlex.split(command, comments=True)) if "#" in command else command


def test_every_command_runs_here_or_says_why_not() -> None:
    commands = doc_commands()
    assert len(commands) > 40, "the extraction found too few commands"
    unclassified, twice = [], []
    for command in commands:
        runs = command.text in RUN
        reasons = reason_not_run(command.text)
        if runs + len(reasons) == 0:
            unclassified.append(f"{command.doc}: {command.text}")
        elif runs + len(reasons) > 1:
            twice.append(f"{command.doc}: {command.text}")
    assert not unclassified, "put these in RUN or NOT_RUN (with the reason):\n" + "\n".join(unclassified)
    assert not twice, "these match more than one entry:\n" + "\n".join(twice)
    texts = [command.text for command in commands]
    assert not [run for run in RUN if run not in texts], "RUN names commands the docs no longer have"
    unused = [entry.pattern for entry in NOT_RUN if not any(re.match(entry.pattern, text) for text in texts)]
    assert not unused, f"NOT_RUN entries that match no command: {unused}"


@pytest.mark.parametrize("command", RUN)
def test_the_command_runs_as_printed(command: str) -> None:
    run = subprocess.run(
        ["bash", "-c", command],
        cwd=ROOT,
        env={**os.environ, "PATH": DOC_PATH, "SAM_CLI_TELEMETRY": "0"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    if command.startswith("sam validate"):
        assert "is a valid SAM Template" in run.stdout + run.stderr
    if " invoke events/" in command:
        response = json.loads(run.stdout)
        assert response["statusCode"] == 200, response


def test_the_deploy_section_builds_invokes_then_deploys() -> None:
    """The README's deploy section: `sam build`, then `sam local invoke` of the built image, then `sam deploy`."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Deploying to AWS") :]
    commands = shell_commands(section[: section.index("\n## ", 1)])
    steps = [without_comment(c).split(" --")[0] for c in commands if c.startswith("sam ")]
    assert steps[1:4] == ["sam build", "sam local invoke InferenceFunction", "sam deploy"], steps


SAM_PARSE = """
import json, sys
import click
from samcli.cli.main import cli

problems = []
for args in json.loads(sys.argv[1]):
    try:
        ctx = cli.make_context("sam", list(args))
        command, rest = cli, ctx.protected_args + ctx.args
        while isinstance(command, click.Group):
            name, command, rest = command.resolve_command(ctx, rest)
            ctx = command.make_context(name, rest, parent=ctx)
            rest = ctx.protected_args + ctx.args if isinstance(command, click.Group) else ctx.args
        if "config_env" in ctx.params and not ctx.default_map:
            problems.append(f"{args}: samconfig.toml has no environment {ctx.params['config_env']!r}")
    except click.ClickException as error:
        problems.append(f"{args}: {error.format_message()}")
print(json.dumps(problems))
"""


def _arguments(command: str) -> list[str]:
    """The words of a command, a command substitution standing for the overrides it would print."""
    overrides = "ModelKey=m/1-a/model.onnx ModelVersionId=v ManifestVersionId=m ManifestSha256=" + "0" * 64
    text = re.sub(r"\$\(cat [^)]*\.overrides\)", overrides, command)
    text = re.sub(r"\$\(overrides (\S+)\)", lambda match: " ".join(samconfig_overrides(match[1])), text)
    return shlex.split(text.replace("\\\n", " "), comments=True)


def samconfig_overrides(env: str) -> list[str]:
    """What the docs' `overrides` helper prints: an environment's parameter overrides in samconfig.toml."""
    import tomllib

    overrides: list[str] = tomllib.loads((ROOT / "samconfig.toml").read_text())[env]["deploy"]["parameters"][
        "parameter_overrides"
    ]
    return overrides


def test_the_overrides_helper_prints_the_environments_overrides() -> None:
    """The docs' first deploy as the deployer passes every samconfig.toml override through this helper."""
    helper = next(command for command in RUN if command.startswith("overrides() "))
    run = subprocess.run(
        ["bash", "-c", f"{helper}\noverrides dev"],
        cwd=ROOT,
        env={**os.environ, "PATH": DOC_PATH},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert run.stdout.split() == samconfig_overrides("dev")


def test_every_sam_command_parses_with_this_sam_cli() -> None:
    commands = [c.text for c in doc_commands() if c.text.startswith("sam ")]
    assert commands
    arguments = [_arguments(command)[1:] for command in commands]
    run = subprocess.run(
        [str(SAM_PYTHON), "-c", SAM_PARSE, json.dumps(arguments)],
        cwd=ROOT,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(run.stdout.strip().splitlines()[-1]) == []


def test_every_onnx_lambda_command_parses() -> None:
    from onnx_lambda_tools.cli import build_parser

    parser = build_parser()
    # With an environment assignment first (AWS_PROFILE=... onnx-lambda publish), as the shell runs it.
    prefix = r"(\w+=\S+ )*(\.venv/bin/)?onnx-lambda "
    commands = [c.text for c in doc_commands() if re.match(prefix, c.text.split("\n")[0])]
    assert commands
    for command in commands:
        words = _arguments(command)
        while re.fullmatch(r"\w+=\S*", words[0]):
            words = words[1:]
        try:
            parser.parse_args(words[1:])
        except SystemExit as exit_:
            pytest.fail(f"{command}: onnx-lambda refuses these arguments ({exit_})")


def test_samconfig_environments_name_their_region() -> None:
    """Every `sam` command finds its stack and region through --config-env alone."""
    import tomllib

    samconfig = tomllib.loads((ROOT / "samconfig.toml").read_text())
    for env in ("dev", "prod", "prod-secondary"):
        parameters = samconfig[env]["global"]["parameters"]
        assert parameters["stack_name"]
        assert re.fullmatch(r"[a-z]{2}-[a-z]+-\d", parameters["region"])
