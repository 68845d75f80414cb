"""``onnx-lambda``: serve, publish, token, invoke. Each command imports only what it needs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onnx-lambda", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    from onnx_lambda import invoke, publish, serve, tokens

    serve.add_serve_arguments(
        commands.add_parser("serve", help="the local stack: local S3 + Cognito, published models, the API")
    )
    publish.add_publish_arguments(
        commands.add_parser("publish", help="upload a model directory to S3 and print the sam deploy parameters")
    )
    tokens.add_token_arguments(commands.add_parser("token", help="print a bearer token"))
    invoke.add_invoke_arguments(
        commands.add_parser("invoke", help="run the Lambda handler in-process on an event file, like sam local invoke")
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from onnx_lambda import invoke, publish, serve, tokens

    command: dict[str, Callable[[argparse.Namespace], int]] = {
        "serve": serve.serve_command,
        "publish": publish.publish_command,
        "token": tokens.token_command,
        "invoke": invoke.invoke_command,
    }
    return command[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
