"""The two ways this stack accepts a scanner's finding, each with a reason a reviewer can read.

cdk-nag 3 runs as a CDK validation plugin and honours CDK's own `Validations.acknowledge`;
checkov reads `Metadata.checkov.skip` on the CloudFormation resource it reports.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import IConstruct

# A reason says why the finding does not apply here; "n/a" or "ok" says nothing.
MINIMUM_REASON_LENGTH = 30


def _check_reason(rule_id: str, reason: str) -> None:
    if len(reason.strip()) < MINIMUM_REASON_LENGTH:
        raise ValueError(f"{rule_id}: the reason must explain why it does not apply: {reason!r}")


def acknowledge_nag(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Accept a cdk-nag finding on `scope` and everything below it."""
    _check_reason(rule_id, reason)
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=rule_id, reason=reason))


def skip_checkov(resource: cdk.CfnResource, check_id: str, reason: str) -> None:
    """Record a checkov skip on one CloudFormation resource, next to the resource itself."""
    _check_reason(check_id, reason)
    existing: Any = resource.get_metadata("checkov") or {}
    skips = [*existing.get("skip", []), {"id": check_id, "comment": reason}]
    resource.add_metadata("checkov", {"skip": skips})


def cfn_resource(scope: IConstruct) -> cdk.CfnResource:
    """The CloudFormation resource behind an L2 construct (its default child)."""
    child = scope.node.default_child
    if not isinstance(child, cdk.CfnResource):
        raise TypeError(f"{scope.node.path} has no CloudFormation resource as default child")
    return child
