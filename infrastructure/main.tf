# What this configuration bootstraps, once per AWS account and repository:
#   s3.tf          the DVC remote: one private, versioned, encrypted, TLS-only bucket;
#   permissions.tf what CI may do: DVC under the bucket's dvc/ prefix, and assume the CDK
#                  bootstrap roles (which hold the permissions `cdk deploy` needs);
#   github_oidc.tf github_auth = "oidc": three roles GitHub Actions assumes with short-lived
#                  OIDC tokens (training, and its read-only data pull: pull requests and
#                  branches; deploy: main only);
#   ci_user.tf     github_auth = "access_key": one IAM user whose key lives in GitHub secrets.
# Exactly one of the two identities exists; `var.github_auth` selects it.

data "aws_partition" "current" {}

data "aws_caller_identity" "current" {}

locals {
  partition  = data.aws_partition.current.partition
  dns_suffix = data.aws_partition.current.dns_suffix
  account_id = data.aws_caller_identity.current.account_id
  # The provider is configured with this region (providers.tf), so it is the region of every
  # resource here; reading it from the variable works the same on provider 5.x and 6.x.
  region = var.aws_region

  # DVC's remote is s3://<bucket>/dvc (`make configure-dvc BUCKET=<bucket>`): CI identities
  # reach only this prefix, so anything else kept in the bucket stays out of their reach.
  dvc_prefix = "dvc"

  # The four roles `cdk bootstrap` creates. `cdk deploy` assumes them from the caller's
  # credentials: the deploy role runs CloudFormation (through its own execution role), the
  # publishing roles upload the Docker image and file assets, and the lookup role reads
  # context such as VPCs. Granting sts:AssumeRole on exactly these ARNs gives CI the
  # permissions a deployment needs and nothing the bootstrap did not already scope.
  cdk_bootstrap_role_arns = [
    "arn:${local.partition}:iam::${local.account_id}:role/cdk-${var.cdk_qualifier}-deploy-role-${local.account_id}-${local.region}",
    "arn:${local.partition}:iam::${local.account_id}:role/cdk-${var.cdk_qualifier}-file-publishing-role-${local.account_id}-${local.region}",
    "arn:${local.partition}:iam::${local.account_id}:role/cdk-${var.cdk_qualifier}-image-publishing-role-${local.account_id}-${local.region}",
    "arn:${local.partition}:iam::${local.account_id}:role/cdk-${var.cdk_qualifier}-lookup-role-${local.account_id}-${local.region}",
  ]
}
