# The DVC remote. Everything DVC pushes (datasets, the trained model and its reports) lands
# under s3://<bucket>/dvc, content-addressed, so the bucket is the project's model registry:
# it must stay private, keep old versions recoverable for a while, and never be emptied by
# accident.

resource "aws_s3_bucket" "dvc" {
  # checkov:skip=CKV_AWS_18: Server access logs are opt-in (var.access_log_bucket_name) because they need a second bucket; CloudTrail S3 data events are the audit trail AWS recommends for object access.
  # checkov:skip=CKV_AWS_144: No cross-region replication: every object is reproducible from Git (code, params.yaml, dvc.lock) and the source data, and versioning already undoes deletions; replication would double storage cost for a bootstrap bucket.
  # checkov:skip=CKV2_AWS_62: No event notifications: nothing consumes object events, the workflows call DVC directly.
  # checkov:skip=CKV_AWS_145: SSE-S3 is the deliberate default (see aws_s3_bucket_server_side_encryption_configuration.dvc); set var.kms_key_arn to encrypt with a customer-managed KMS key instead.
  bucket_prefix = var.bucket_name_prefix

  # false by default: `terraform destroy` then refuses to delete a bucket that still holds
  # model versions, instead of silently deleting every one of them (destroy_guard.tf stops it
  # before any setting of the bucket is removed).
  force_destroy = var.force_destroy
}

# All four blocks: no ACL or bucket policy can ever make the bucket or an object public,
# whatever a later change to this file or a click in the console tries.
resource "aws_s3_bucket_public_access_block" "dvc" {
  bucket = aws_s3_bucket.dvc.id

  block_public_acls       = true
  ignore_public_acls      = true
  block_public_policy     = true
  restrict_public_buckets = true
}

# ACLs disabled: the bucket owner owns every object and only IAM and the bucket policy
# decide access, so there is one place to read who can do what.
resource "aws_s3_bucket_ownership_controls" "dvc" {
  bucket = aws_s3_bucket.dvc.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

# Versioning turns an overwrite or a `dvc gc --cloud` that removed too much into a
# recoverable mistake for var.noncurrent_version_expiration_days.
resource "aws_s3_bucket_versioning" "dvc" {
  bucket = aws_s3_bucket.dvc.id

  versioning_configuration {
    status = "Enabled"
  }
}

# Encryption at rest: SSE-S3 (AES-256 with keys S3 manages) unless var.kms_key_arn names a
# customer-managed KMS key.
#
# Why SSE-S3 by default: every object is encrypted either way; what a customer-managed key
# adds is a second permission (kms:Decrypt) that an S3 grant alone cannot bypass, per-request
# key-usage records in CloudTrail, and crypto-shredding by disabling the key. Access to this
# bucket is already limited by IAM and the bucket policy to the two CI identities below, and
# the template's data (a public dataset and the models trained on it) needs none of those
# extras; a key would cost a monthly fee plus per-request charges and a key policy that has
# to be administered. When the data is sensitive, bring the organisation's key
# (var.kms_key_arn): the key's policy and rotation then stay with whoever owns the data's
# classification, the bucket switches to SSE-KMS with an S3 Bucket Key (which cuts KMS
# requests, and their cost, by orders of magnitude), and permissions.tf grants the CI
# identities exactly the KMS actions S3 needs on that one key.
resource "aws_s3_bucket_server_side_encryption_configuration" "dvc" {
  bucket = aws_s3_bucket.dvc.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.kms_key_arn == null ? "AES256" : "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = var.kms_key_arn != null
  }
}

# Noncurrent versions are kept for a configurable window, then expire, so versioning does not
# grow the bill forever; parts of interrupted multipart uploads are invisible in listings but
# billed, so they are cleaned up too.
resource "aws_s3_bucket_lifecycle_configuration" "dvc" {
  bucket = aws_s3_bucket.dvc.id

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"

    # An empty filter applies the rule to every object in the bucket.
    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    # Once its noncurrent versions have expired, a delete marker is useless: remove it.
    expiration {
      expired_object_delete_marker = true
    }
  }

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_upload_days
    }
  }

  # S3 applies noncurrent-version rules only to a bucket whose versioning is already on.
  depends_on = [aws_s3_bucket_versioning.dvc]
}

resource "aws_s3_bucket_logging" "dvc" {
  count = var.access_log_bucket_name == null ? 0 : 1

  bucket        = aws_s3_bucket.dvc.id
  target_bucket = var.access_log_bucket_name
  target_prefix = var.access_log_prefix
}

resource "aws_s3_bucket_policy" "dvc" {
  bucket = aws_s3_bucket.dvc.id
  policy = data.aws_iam_policy_document.dvc_bucket.json

  # Applied after the public-access block, so there is never a moment in which a policy
  # exists and the block does not.
  depends_on = [aws_s3_bucket_public_access_block.dvc]
}

# Deny statements only: access is granted by the identities' own policies (permissions.tf).
# These hold for every principal, including administrators, so no client can talk to the
# bucket in clear text or over TLS older than 1.2.
data "aws_iam_policy_document" "dvc_bucket" {
  dynamic "statement" {
    for_each = {
      DenyInsecureTransport = { test = "Bool", variable = "aws:SecureTransport", value = "false" }
      DenyOutdatedTls       = { test = "NumericLessThan", variable = "s3:TlsVersion", value = "1.2" }
    }

    content {
      sid    = statement.key
      effect = "Deny"
      # Every action: a deny that listed actions would leave the unlisted ones allowed over HTTP.
      actions = ["s3:*"]
      resources = [
        aws_s3_bucket.dvc.arn,
        "${aws_s3_bucket.dvc.arn}/*",
      ]

      principals {
        type        = "*"
        identifiers = ["*"]
      }

      condition {
        test     = statement.value.test
        variable = statement.value.variable
        values   = [statement.value.value]
      }
    }
  }
}
