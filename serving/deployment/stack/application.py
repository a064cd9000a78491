"""Build the CDK app: settings from context, the stack, and the cdk-nag rule pack."""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from container import dockerfile
from deployment.stack.model_signals import ModelSignals
from deployment.stack.scoring_job import SCORING_JOB_KEYS
from deployment.stack.service import TMP_PATH
from deployment.stack.service_stack import ServiceStack
from deployment.stack.settings import DeploymentSettings, context_keys, refuse_unknown_keys

# serving/app: the service's code, model and Dockerfile, the build context of its image.
SERVICE_DIRECTORY = Path(__file__).resolve().parents[2] / "app"
# What training wrote about the model, inside the image's build context; the dashboard charts
# its classes and features.
MODEL_METADATA = Path("data") / "model_metadata.json"
# Every context key the app reads; synthesis refuses any other that is not CDK's own.
CONTEXT_KEYS = frozenset((*context_keys(DeploymentSettings), *SCORING_JOB_KEYS))


def build(app: cdk.App, *, region: str, image_directory: Path = SERVICE_DIRECTORY) -> ServiceStack:
    """Add the service stack to `app`, configured from the app's context values.

    Only the region is fixed: the load balancer's access-log bucket policy names the region's
    log-delivery principal. The account stays the deploying credentials', so synthesis looks
    nothing up and needs no AWS access.
    """
    refuse_unknown_keys(app.node.get_all_context(), CONTEXT_KEYS)
    settings = DeploymentSettings.from_context(app.node.try_get_context)
    stack = ServiceStack(
        app,
        settings.stack_name,
        env=cdk.Environment(region=region),
        description="Prediction service on ECS Fargate behind an Application Load Balancer",
        settings=settings,
        image_directory=image_directory,
        container_user=dockerfile.runtime_user(image_directory / "Dockerfile"),
        model=ModelSignals.read(image_directory / MODEL_METADATA),
    )
    if TMP_PATH not in dockerfile.read(image_directory / "Dockerfile").volumes:
        cdk.Annotations.of(stack).add_warning_v2(
            "deployment:tmp-volume",
            f"{image_directory / 'Dockerfile'} does not declare VOLUME {TMP_PATH}: on Fargate the "
            f"task volume mounted at {TMP_PATH} is then owned by root (0755), and the non-root "
            "service cannot write to it.",
        )
    # cdk-nag 3 is a validation plugin: synthesis fails on any finding not acknowledged with
    # `Validations.of(construct).acknowledge`, and the acknowledgments with their reasons are
    # written into the template's metadata for reviewers.
    cdk.Validations.of(app).add_plugins(
        AwsSolutionsChecks(app, verbose=True, write_suppressions_to_cloud_formation=True)
    )
    return stack
