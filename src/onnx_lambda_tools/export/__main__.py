"""``python -m onnx_lambda_tools.export --out models``: write every model directory under ``--out``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from onnx_lambda.manifest import MODEL_FILE, Manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m onnx_lambda_tools.export",
        description="Export all-MiniLM-L6-v2 (fp32 + int8) and the breast cancer classifier to ONNX, "
        "each with its manifest.json.",
    )
    parser.add_argument("--out", type=Path, default=Path("models"), help="directory to write (default: models)")
    args = parser.parse_args(argv)
    out: Path = args.out

    # Imported here so `--help` stays instant: these pull in scikit-learn and torch.
    from onnx_lambda_tools.export import minilm, tabular

    manifests: list[Manifest] = [tabular.build(out), *minilm.build(out)]
    for manifest in manifests:
        model = manifest.files[MODEL_FILE]
        print(f"{out / manifest.name}: {MODEL_FILE} {model.bytes:,} bytes, sha256 {model.sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
