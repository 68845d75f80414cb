"""``onnx-lambda``: serve, publish, token, invoke. Each command imports only what it needs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from onnx_lambda_tools.bench.command import add_bench_arguments, bench_command
from onnx_lambda_tools.cost.command import add_cost_arguments, cost_command
from onnx_lambda_tools.invoke import add_invoke_arguments, invoke_command
from onnx_lambda_tools.package import add_package_arguments, package_command
from onnx_lambda_tools.publish import add_publish_arguments, publish_command
from onnx_lambda_tools.serve import add_serve_arguments, serve_command
from onnx_lambda_tools.tokens import add_token_arguments, token_command
from onnx_lambda_tools.tune import add_tune_arguments, tune_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onnx-lambda", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text, add_arguments, command in (
        ("serve", "the local stack: local S3 + Cognito, published models, the API", add_serve_arguments, serve_command),
        (
            "publish",
            "upload a model directory to S3; print the sam deploy parameters",
            add_publish_arguments,
            publish_command,
        ),
        ("token", "print a bearer token", add_token_arguments, token_command),
        ("package", "turn your own model.onnx into a model directory", add_package_arguments, package_command),
        ("invoke", "run the Lambda handler in-process on an event file", add_invoke_arguments, invoke_command),
        ("cost", "monthly cost, cost per million requests, SageMaker comparison", add_cost_arguments, cost_command),
        ("bench", "every path against its raw reference: ratios, JSON, docs", add_bench_arguments, bench_command),
        (
            "tune",
            "power tuning offline: each memory size in the function's container",
            add_tune_arguments,
            tune_command,
        ),
    ):
        subparser = commands.add_parser(name, help=help_text)
        add_arguments(subparser)
        subparser.set_defaults(run=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
