# What CI may do, written once and attached to whichever identity var.github_auth creates.
# Every Allow names its actions one by one (no wildcards) and its resources by ARN.

locals {
  dvc_objects_arn = "${aws_s3_bucket.dvc.arn}/${local.dvc_prefix}/*"

  # With a customer-managed key, S3 calls KMS on the identity's behalf; the kms:ViaService
  # condition keeps these grants usable only through S3 in this region, not directly.
  kms_key_arns = var.kms_key_arn == null ? [] : [var.kms_key_arn]
  s3_service   = "s3.${local.region}.${local.dns_suffix}"

  # Secrets Manager appends six random characters to a secret's name in its ARN.
  api_keys_secret_arn = "arn:${local.partition}:secretsmanager:${local.region}:${local.account_id}:secret:${var.api_keys_secret_name}-??????"
}

# Read the DVC remote: `dvc pull`, `dvc fetch`, `dvc status --cloud`, `dvc metrics diff`
# against a revision whose outputs are only in the remote.
data "aws_iam_policy_document" "dvc_read" {
  statement {
    sid       = "ListDvcPrefix"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.dvc.arn]

    # Listing is limited to keys under dvc/ (and the prefix itself, which DVC probes). S3
    # also consults this grant, with s3:prefix set to the key, to answer a HEAD or GET of a
    # missing object under dvc/ with 404 rather than 403, which is how DVC learns that an
    # object still has to be pushed.
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [local.dvc_prefix, "${local.dvc_prefix}/*"]
    }
  }

  statement {
    sid = "LocateBucket"
    # The SDKs ask for the bucket's region when the client was configured with another one.
    actions   = ["s3:GetBucketLocation"]
    resources = [aws_s3_bucket.dvc.arn]
  }

  statement {
    sid       = "ReadDvcObjects"
    actions   = ["s3:GetObject"]
    resources = [local.dvc_objects_arn]
  }

  dynamic "statement" {
    for_each = local.kms_key_arns

    content {
      sid       = "DecryptDvcObjects"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = [local.s3_service]
      }
    }
  }
}

# Read and write the DVC remote: everything above plus `dvc push` (including multipart
# uploads of large files and their abort) and `dvc gc --cloud`.
data "aws_iam_policy_document" "dvc_read_write" {
  source_policy_documents = [data.aws_iam_policy_document.dvc_read.json]

  statement {
    sid = "WriteDvcObjects"
    actions = [
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = [local.dvc_objects_arn]
  }

  dynamic "statement" {
    for_each = local.kms_key_arns

    content {
      sid       = "EncryptDvcObjects"
      actions   = ["kms:GenerateDataKey"]
      resources = [statement.value]

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = [local.s3_service]
      }
    }
  }
}

# Deploy with `cdk deploy`: assume the CDK bootstrap roles, and read the service's API keys.
# The roles carry the CloudFormation, ECR and S3 permissions a deployment needs; they trust
# this account, so an identity here may assume them once its own policy allows it.
data "aws_iam_policy_document" "cdk_deploy" {
  statement {
    sid       = "AssumeCdkBootstrapRoles"
    actions   = ["sts:AssumeRole"]
    resources = local.cdk_bootstrap_role_arns
  }

  # The smoke test after a deploy authenticates with a key from the service's API-key
  # secret: reading that one secret, nothing else in Secrets Manager, and never writing it.
  statement {
    sid       = "ReadTheServiceApiKeys"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.api_keys_secret_arn]
  }
}

# The deploy role of OIDC mode: `dvc pull` the model that goes into the image, then deploy.
data "aws_iam_policy_document" "dvc_read_and_cdk_deploy" {
  source_policy_documents = [
    data.aws_iam_policy_document.dvc_read.json,
    data.aws_iam_policy_document.cdk_deploy.json,
  ]
}

# The single IAM user of access-key mode runs both workflows, so it needs both sets.
data "aws_iam_policy_document" "dvc_read_write_and_cdk_deploy" {
  source_policy_documents = [
    data.aws_iam_policy_document.dvc_read_write.json,
    data.aws_iam_policy_document.cdk_deploy.json,
  ]
}
