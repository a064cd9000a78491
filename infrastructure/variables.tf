# --- Required ---------------------------------------------------------------------------

variable "aws_region" {
  description = "Region of the DVC bucket and of the CDK-bootstrapped environment the service is deployed to (the workflows read it from the AWS_REGION repository variable)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]+$", var.aws_region))
    error_message = "aws_region must be an AWS region code such as eu-west-1."
  }
}

variable "github_repository" {
  description = "The GitHub repository allowed to use the CI identity, as OWNER/REPO (for example my-org/penguins-mlops)."
  type        = string

  validation {
    # GitHub owners are alphanumerics and hyphens; repository names also allow . and _.
    # Anything else (a wildcard, a trailing slash, a URL) would widen or break the OIDC trust.
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$", var.github_repository))
    error_message = "github_repository must be OWNER/REPO, without wildcards, URL or trailing slash."
  }
}

# --- Identity for GitHub Actions ------------------------------------------------------

variable "github_auth" {
  description = <<-EOT
    How GitHub Actions authenticates to AWS:
    "oidc" (recommended): GitHub's OIDC provider plus a training role and a deploy role, no long-lived key exists.
    "access_key": one IAM user whose access key is stored as GitHub secrets.
  EOT
  type        = string
  default     = "oidc"

  validation {
    condition     = contains(["oidc", "access_key"], var.github_auth)
    error_message = "github_auth must be \"oidc\" or \"access_key\"."
  }
}

variable "existing_github_oidc_provider_arn" {
  description = "ARN of a GitHub OIDC provider (https://token.actions.githubusercontent.com) that already exists in the account. An account holds at most one provider per issuer URL, so set this when another stack created it; leave null to create it here. Used only when github_auth is \"oidc\"."
  type        = string
  default     = null

  validation {
    condition = (
      var.existing_github_oidc_provider_arn == null
      || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/token\\.actions\\.githubusercontent\\.com$", var.existing_github_oidc_provider_arn))
    )
    error_message = "existing_github_oidc_provider_arn must be the ARN of the token.actions.githubusercontent.com OIDC provider."
  }
}

variable "name_prefix" {
  description = "Prefix of the IAM user, group and role names (and the Project tag)."
  type        = string
  default     = "mlops-template"

  validation {
    # User and role names are limited to 64 characters; the longest suffix added here
    # ("-github-actions") is 15.
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,40}$", var.name_prefix))
    error_message = "name_prefix must be 1-40 characters from IAM's name alphabet (letters, digits, +=,.@_-)."
  }
}

variable "cdk_qualifier" {
  description = "Qualifier of the CDK v2 bootstrap stack (`cdk bootstrap --qualifier`); hnb659fds is CDK's default. The deploy identity may assume only that bootstrap's roles."
  type        = string
  default     = "hnb659fds"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,10}$", var.cdk_qualifier))
    error_message = "cdk_qualifier must be 1-10 letters, digits, hyphens or underscores, as `cdk bootstrap` requires."
  }
}

variable "api_keys_secret_name" {
  description = "The Secrets Manager secret the deployed service reads its API keys from: the stack creates <stackName>/api-keys (serving/deployment/cdk.json) unless its apiKeysSecretName context value names another. The deploy identity may read this one secret (the smoke test authenticates with a key from it), and no other."
  type        = string
  default     = "PenguinsService/api-keys"

  validation {
    condition     = can(regex("^[A-Za-z0-9/_+=.@-]{1,512}$", var.api_keys_secret_name))
    error_message = "api_keys_secret_name must be a Secrets Manager secret name (letters, digits, /_+=.@-), not an ARN or a wildcard."
  }
}

# --- DVC bucket -----------------------------------------------------------------------

variable "bucket_name_prefix" {
  description = "Prefix of the DVC bucket's name; S3 appends a unique suffix, so no globally unique name has to be invented or hard-coded."
  type        = string
  default     = "mlops-dvc-"

  validation {
    # S3's generated suffix is 26 characters and bucket names are at most 63.
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{0,36}$", var.bucket_name_prefix))
    error_message = "bucket_name_prefix must be 1-37 lowercase letters, digits, dots or hyphens, starting with a letter or digit."
  }
}

variable "noncurrent_version_expiration_days" {
  description = "Days a replaced or deleted object version is kept before it expires. Versioning is what lets an accidental `dvc gc --cloud` or overwrite be undone within this window."
  type        = number
  default     = 90

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1 && floor(var.noncurrent_version_expiration_days) == var.noncurrent_version_expiration_days
    error_message = "noncurrent_version_expiration_days must be a whole number of days, at least 1."
  }
}

variable "abort_incomplete_multipart_upload_days" {
  description = "Days after which the parts of an interrupted multipart upload (a cancelled `dvc push` of a large file) are deleted; S3 bills them until then."
  type        = number
  default     = 7

  validation {
    condition     = var.abort_incomplete_multipart_upload_days >= 1 && floor(var.abort_incomplete_multipart_upload_days) == var.abort_incomplete_multipart_upload_days
    error_message = "abort_incomplete_multipart_upload_days must be a whole number of days, at least 1."
  }
}

variable "kms_key_arn" {
  description = "ARN of an existing customer-managed KMS key to encrypt the bucket with (SSE-KMS). Leave null for SSE-S3, the default; see the comment on the bucket's encryption for when a key is worth it. The key's policy must let this account's IAM policies grant its use."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID); aliases are not accepted because IAM policies match key ARNs."
  }
}

variable "access_log_bucket_name" {
  description = "Name of an existing bucket that receives S3 server access logs of the DVC bucket (under access_log_prefix). Leave null to not write access logs; see the comment on the bucket for why that is the default."
  type        = string
  default     = null
}

variable "access_log_prefix" {
  description = "Key prefix of the DVC bucket's access logs in access_log_bucket_name."
  type        = string
  default     = "s3-access-logs/dvc/"
}

variable "force_destroy" {
  description = "Let `terraform destroy` run, and delete the bucket even while it still holds objects. While false, destroy refuses before it changes anything (destroy_guard.tf). Keep false outside teardown: the bucket holds every model and dataset version DVC ever pushed."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Extra tags for every resource (merged over the defaults in providers.tf)."
  type        = map(string)
  default     = {}
}
