"""Run the SAM transform offline, the way `sam validate` and CloudFormation's transform do.

Run by aws-sam-cli's own interpreter (its virtualenv pins samtranslator; the project's does not carry
it), as ``python sam_transform.py TEMPLATE [PARAMETERS_JSON]``: prints the CloudFormation template as JSON.
Managed policy names resolve from samtranslator's bundled table; the loader only answers for names that
table lacks, so it is a stub and never calls IAM.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from samcli.yamlhelper import yaml_parse  # type: ignore[import-not-found]
from samtranslator.translator.transform import transform  # type: ignore[import-not-found]

#: The pseudo parameters the transform may need; a fixed account and region keep the output stable.
PSEUDO_PARAMETERS = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws"}


#: What `sam deploy` puts in place of local code and the built image after uploading them.
PACKAGED_CODE = "s3://packaged-artifacts/code.zip"
PACKAGED_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/onnx-lambda:packaged"


def as_packaged(template: dict[str, Any]) -> dict[str, Any]:
    """Point local code and images at uploaded artifacts, as `sam package` does before the transform."""
    for resource in template.get("Resources", {}).values():
        properties = resource.setdefault("Properties", {})
        if resource.get("Type") == "AWS::Serverless::Function":
            if properties.get("PackageType") == "Image":
                properties.setdefault("ImageUri", PACKAGED_IMAGE)
            elif isinstance(properties.get("CodeUri"), str) and not properties["CodeUri"].startswith("s3://"):
                properties["CodeUri"] = PACKAGED_CODE
        elif (
            resource.get("Type") == "AWS::Serverless::LayerVersion"
            and isinstance(properties.get("ContentUri"), str)
            and not properties["ContentUri"].startswith("s3://")
        ):
            properties["ContentUri"] = PACKAGED_CODE
    return template


class StubManagedPolicyLoader:
    def load(self) -> dict[str, str]:
        return {}


def main(argv: list[str]) -> int:
    # The translator asks a boto3 session for the region; answer it without any AWS configuration.
    os.environ["AWS_DEFAULT_REGION"] = PSEUDO_PARAMETERS["AWS::Region"]
    # samtranslator logs a warning for each feature toggle it has no config for; nothing to act on here.
    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    template = as_packaged(yaml_parse(Path(argv[1]).read_text()))
    parameters: dict[str, Any] = {**PSEUDO_PARAMETERS, **(json.loads(argv[2]) if len(argv) > 2 else {})}
    print(json.dumps(transform(template, parameters, StubManagedPolicyLoader()), indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
