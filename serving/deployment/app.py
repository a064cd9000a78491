"""CDK entry point: `make synth`, `make deploy` (or `npx cdk ...` here) run this file."""

from __future__ import annotations

import os
import sys

import aws_cdk as cdk

from container.dockerfile import DockerfileError
from deployment.stack.application import build
from deployment.stack.model_signals import ModelMetadataError
from deployment.stack.settings import ContextError


def main() -> None:
    app = cdk.App()
    # The CDK CLI sets it from AWS_REGION or the AWS profile, and to us-east-1 when neither is
    # configured, so offline synthesis works too.
    region = os.environ.get("CDK_DEFAULT_REGION")
    if not region:
        sys.exit("CDK_DEFAULT_REGION is not set: run this app through the CDK CLI (make synth)")
    try:
        build(app, region=region)
    except (ContextError, DockerfileError, ModelMetadataError) as error:
        sys.exit(str(error))
    app.synth()


if __name__ == "__main__":
    main()
