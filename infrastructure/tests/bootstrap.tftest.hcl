# `terraform test` over the whole configuration, with no AWS account and no network: every
# managed resource is overridden (Terraform records the values below instead of calling
# AWS), and the data sources that render the policies (aws_iam_policy_document,
# aws_partition) run in the real AWS provider, which builds them locally. So each run
# "applies" the configuration and asserts on the policy JSON, resource arguments and outputs
# exactly as the provider renders them. A resource added without an override here makes the
# suite fail (the placeholder credentials reach no AWS), never pass silently.
#
# Every variable is set below, so a terraform.tfvars in infrastructure/ (which `terraform
# test` reads too) cannot change what a run checks. The apply against an S3/IAM API is
# infrastructure/tests/test_apply.py; what moto cannot evaluate (web-identity trust
# conditions, StringLike, TLS conditions) is pinned here.

provider "aws" {
  region = "eu-west-1"

  access_key = "placeholder"
  # checkov:skip=CKV_SECRET_6: A placeholder, not a credential: every resource is overridden and no call reaches AWS.
  secret_key = "placeholder"

  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
}

# The China partition, for the run that checks ARNs follow partition, account and region.
provider "aws" {
  alias  = "china"
  region = "cn-north-1"

  access_key = "placeholder"
  # checkov:skip=CKV_SECRET_6: A placeholder, not a credential: every resource is overridden and no call reaches AWS.
  secret_key = "placeholder"

  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
}

# --- What AWS would return -------------------------------------------------------------

override_data {
  target = data.aws_caller_identity.current
  values = { account_id = "123456789012" }
}

override_resource {
  target = aws_s3_bucket.dvc
  values = {
    id     = "mlops-dvc-20261202153000000000000001"
    bucket = "mlops-dvc-20261202153000000000000001"
    arn    = "arn:aws:s3:::mlops-dvc-20261202153000000000000001"
  }
}

override_resource {
  target = aws_iam_openid_connect_provider.github
  values = { arn = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com" }
}

override_resource {
  target = aws_iam_role.github_train
  values = {
    id  = "mlops-template-github-train"
    arn = "arn:aws:iam::123456789012:role/mlops-template-github-train"
  }
}

override_resource {
  target = aws_iam_role.github_data
  values = {
    id  = "mlops-template-github-data"
    arn = "arn:aws:iam::123456789012:role/mlops-template-github-data"
  }
}

override_resource {
  target = aws_iam_role.github_deploy
  values = {
    id  = "mlops-template-github-deploy"
    arn = "arn:aws:iam::123456789012:role/mlops-template-github-deploy"
  }
}

override_resource {
  target = aws_iam_access_key.github_actions
  values = {
    id     = "placeholder-key-id"
    secret = "placeholder"
  }
}

override_resource { target = aws_s3_bucket_public_access_block.dvc }
override_resource { target = aws_s3_bucket_ownership_controls.dvc }
override_resource { target = aws_s3_bucket_versioning.dvc }
override_resource { target = aws_s3_bucket_server_side_encryption_configuration.dvc }
override_resource { target = aws_s3_bucket_lifecycle_configuration.dvc }
override_resource { target = aws_s3_bucket_logging.dvc }
override_resource { target = aws_s3_bucket_policy.dvc }
override_resource { target = aws_iam_role_policy.github_train_dvc }
override_resource { target = aws_iam_role_policy.github_data_dvc }
override_resource { target = aws_iam_role_policy.github_deploy }
override_resource { target = aws_iam_group.github_actions }
override_resource { target = aws_iam_group_policy.github_actions }
override_resource { target = aws_iam_user.github_actions }
override_resource { target = aws_iam_user_group_membership.github_actions }

# --- Every variable, at the value each run starts from -----------------------------------

variables {
  aws_region                             = "eu-west-1"
  github_repository                      = "octo-org/penguins-mlops"
  github_auth                            = "oidc"
  existing_github_oidc_provider_arn      = null
  name_prefix                            = "mlops-template"
  cdk_qualifier                          = "hnb659fds"
  api_keys_secret_name                   = "PenguinsService/api-keys"
  bucket_name_prefix                     = "mlops-dvc-"
  noncurrent_version_expiration_days     = 90
  abort_incomplete_multipart_upload_days = 7
  kms_key_arn                            = null
  access_log_bucket_name                 = null
  access_log_prefix                      = "s3-access-logs/dvc/"
  force_destroy                          = false
  tags                                   = {}
}

# --- The bucket -------------------------------------------------------------------------

# The public-access block and versioning: checkov (make scan-infrastructure) fails without
# them (CKV_AWS_53-56, CKV2_AWS_6, CKV_AWS_21).
run "bucket_is_owner_enforced_sse_s3_and_guarded" {
  assert {
    condition     = aws_s3_bucket.dvc.bucket_prefix == "mlops-dvc-"
    error_message = "The bucket's name must be generated from bucket_name_prefix."
  }

  assert {
    condition = (
      aws_s3_bucket_ownership_controls.dvc.bucket == aws_s3_bucket.dvc.id
      && one(aws_s3_bucket_ownership_controls.dvc.rule).object_ownership == "BucketOwnerEnforced"
    )
    error_message = "ACLs must be disabled (BucketOwnerEnforced)."
  }

  assert {
    condition = (
      aws_s3_bucket_server_side_encryption_configuration.dvc.bucket == aws_s3_bucket.dvc.id
      && [for rule in aws_s3_bucket_server_side_encryption_configuration.dvc.rule : {
        algorithm  = one(rule.apply_server_side_encryption_by_default).sse_algorithm
        bucket_key = rule.bucket_key_enabled
      }] == [{ algorithm = "AES256", bucket_key = false }]
    )
    # The key argument is computed by the provider when unset, so the override fills it with
    # a placeholder here; the apply against moto (test_apply.py) reads the real setting.
    error_message = "Without kms_key_arn the bucket must use SSE-S3."
  }

  assert {
    condition     = length(aws_s3_bucket_logging.dvc) == 0
    error_message = "No access logging without a log bucket."
  }

  assert {
    condition     = aws_s3_bucket.dvc.force_destroy == false && terraform_data.destroy_guard.input == false
    error_message = "With force_destroy = false the bucket must refuse deletion and the destroy guard must be armed."
  }

  assert {
    condition     = output.dvc_remote_url == "s3://mlops-dvc-20261202153000000000000001/dvc"
    error_message = "The DVC remote must be the dvc/ prefix of the bucket."
  }
}

run "lifecycle_expires_noncurrent_versions_and_aborts_uploads_after_the_configured_days" {
  variables {
    noncurrent_version_expiration_days     = 45
    abort_incomplete_multipart_upload_days = 3
  }

  assert {
    condition = (
      aws_s3_bucket_lifecycle_configuration.dvc.bucket == aws_s3_bucket.dvc.id
      && toset([for rule in aws_s3_bucket_lifecycle_configuration.dvc.rule : {
        id            = rule.id
        enabled       = rule.status == "Enabled"
        whole_bucket  = length(rule.filter) == 1 && length(one(rule.filter).and) == 0 && length(one(rule.filter).tag) == 0
        noncurrent    = [for e in rule.noncurrent_version_expiration : e.noncurrent_days]
        delete_marker = [for e in rule.expiration : e.expired_object_delete_marker]
        abort         = [for a in rule.abort_incomplete_multipart_upload : a.days_after_initiation]
        }]) == toset([
        { id = "expire-noncurrent-versions", enabled = true, whole_bucket = true, noncurrent = [45], delete_marker = [true], abort = [] },
        { id = "abort-incomplete-multipart-uploads", enabled = true, whole_bucket = true, noncurrent = [], delete_marker = [], abort = [3] },
      ])
    )
    error_message = "The lifecycle must expire noncurrent versions and abort multipart uploads after the configured days, over the whole bucket."
  }
}

run "bucket_policy_denies_every_request_without_tls_1_2_and_grants_nothing" {
  assert {
    condition     = aws_s3_bucket_policy.dvc.bucket == aws_s3_bucket.dvc.id
    error_message = "The policy must be the DVC bucket's."
  }

  assert {
    condition = [for s in jsondecode(aws_s3_bucket_policy.dvc.policy).Statement : {
      effect    = s.Effect
      principal = s.Principal
      actions   = s.Action
      resources = toset(s.Resource)
      condition = s.Condition
      }] == [
      {
        effect    = "Deny"
        principal = "*"
        actions   = "s3:*"
        resources = toset(["arn:aws:s3:::mlops-dvc-20261202153000000000000001", "arn:aws:s3:::mlops-dvc-20261202153000000000000001/*"])
        condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
      {
        effect    = "Deny"
        principal = "*"
        actions   = "s3:*"
        resources = toset(["arn:aws:s3:::mlops-dvc-20261202153000000000000001", "arn:aws:s3:::mlops-dvc-20261202153000000000000001/*"])
        condition = { NumericLessThan = { "s3:TlsVersion" = "1.2" } }
      },
    ]
    error_message = "The bucket policy must be exactly the two denies (no TLS, TLS older than 1.2) for every principal and action, and no Allow."
  }
}

# --- The identity: OIDC ------------------------------------------------------------------

run "oidc_mode_creates_githubs_provider_three_roles_and_no_user_or_key" {
  assert {
    condition = (
      length(aws_iam_openid_connect_provider.github) == 1
      && length(aws_iam_role.github_train) == 1
      && length(aws_iam_role_policy.github_train_dvc) == 1
      && length(aws_iam_role.github_data) == 1
      && length(aws_iam_role_policy.github_data_dvc) == 1
      && length(aws_iam_role.github_deploy) == 1
      && length(aws_iam_role_policy.github_deploy) == 1
      && length(aws_iam_group.github_actions) == 0
      && length(aws_iam_group_policy.github_actions) == 0
      && length(aws_iam_user.github_actions) == 0
      && length(aws_iam_user_group_membership.github_actions) == 0
      && length(aws_iam_access_key.github_actions) == 0
    )
    error_message = "OIDC mode must create the provider and the three roles with their policies, and no IAM user, group or key."
  }

  assert {
    condition = (
      aws_iam_openid_connect_provider.github[0].url == "https://token.actions.githubusercontent.com"
      && aws_iam_openid_connect_provider.github[0].client_id_list == toset(["sts.amazonaws.com"])
    )
    error_message = "The provider must be GitHub's token issuer for the sts.amazonaws.com audience."
  }

  # moto ignores web-identity tokens and StringLike: these conditions are checked here only.
  assert {
    condition = jsondecode(aws_iam_role.github_train[0].assume_role_policy).Statement == [{
      Sid       = "GitHubActionsTrainingRuns"
      Effect    = "Allow"
      Action    = "sts:AssumeRoleWithWebIdentity"
      Principal = { Federated = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com" }
      Condition = {
        StringEquals = { "token.actions.githubusercontent.com:aud" = "sts.amazonaws.com" }
        StringLike = { "token.actions.githubusercontent.com:sub" = [
          "repo:octo-org/penguins-mlops:pull_request",
          "repo:octo-org/penguins-mlops:ref:refs/heads/*",
        ] }
      }
    }]
    error_message = "The training role must trust only this repository's pull requests and branches, through GitHub's provider and audience."
  }

  assert {
    condition = jsondecode(aws_iam_role.github_deploy[0].assume_role_policy).Statement == [{
      Sid       = "GitHubActionsDeployRuns"
      Effect    = "Allow"
      Action    = "sts:AssumeRoleWithWebIdentity"
      Principal = { Federated = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com" }
      Condition = {
        StringEquals = {
          "token.actions.githubusercontent.com:aud" = "sts.amazonaws.com"
          "token.actions.githubusercontent.com:sub" = [
            "repo:octo-org/penguins-mlops:ref:refs/heads/main",
            "repo:octo-org/penguins-mlops:environment:production",
          ]
        }
      }
    }]
    error_message = "The deploy role must trust exactly main and the production environment (StringEquals, no pattern)."
  }

  # The data role is trusted as the training role is; every role has its own policy.
  assert {
    condition = (
      aws_iam_role.github_data[0].assume_role_policy == aws_iam_role.github_train[0].assume_role_policy
      && aws_iam_role.github_train[0].max_session_duration == 3600
      && aws_iam_role.github_data[0].max_session_duration == 3600
      && aws_iam_role.github_deploy[0].max_session_duration == 3600
      && aws_iam_role_policy.github_train_dvc[0].role == aws_iam_role.github_train[0].id
      && aws_iam_role_policy.github_data_dvc[0].role == aws_iam_role.github_data[0].id
      && aws_iam_role_policy.github_deploy[0].role == aws_iam_role.github_deploy[0].id
    )
    error_message = "Each role must carry its own policy and one-hour sessions, and the data role must trust what the training role trusts."
  }

  # Every (effect, action, resource) each role gets: all three read the DVC remote under dvc/;
  # training also writes it and cannot deploy; the data role only reads; the deploy role
  # also assumes the four CDK bootstrap roles and reads the API-key secret, and never writes.
  assert {
    condition = {
      for role, policy in {
        train  = aws_iam_role_policy.github_train_dvc[0].policy
        data   = aws_iam_role_policy.github_data_dvc[0].policy
        deploy = aws_iam_role_policy.github_deploy[0].policy
        } : role => toset(flatten([
          for s in jsondecode(policy).Statement : [
            for a in flatten([s.Action]) : [for r in flatten([s.Resource]) : "${s.Effect} ${a} ${r}"]
          ]
      ]))
      } == {
      for role, grants in {
        train = [for a in ["PutObject", "DeleteObject", "AbortMultipartUpload", "ListMultipartUploadParts"] : "Allow s3:${a} arn:aws:s3:::mlops-dvc-20261202153000000000000001/dvc/*"]
        data  = []
        deploy = concat(
          [for r in ["deploy", "file-publishing", "image-publishing", "lookup"] : "Allow sts:AssumeRole arn:aws:iam::123456789012:role/cdk-hnb659fds-${r}-role-123456789012-eu-west-1"],
          ["Allow secretsmanager:GetSecretValue arn:aws:secretsmanager:eu-west-1:123456789012:secret:PenguinsService/api-keys-??????"],
        )
        } : role => toset(concat([
          "Allow s3:ListBucket arn:aws:s3:::mlops-dvc-20261202153000000000000001",
          "Allow s3:GetBucketLocation arn:aws:s3:::mlops-dvc-20261202153000000000000001",
          "Allow s3:GetObject arn:aws:s3:::mlops-dvc-20261202153000000000000001/dvc/*",
      ], grants))
    }
    error_message = "Each role must get exactly its grants: training DVC read and write under dvc/ and no way to deploy; data DVC read; deploy DVC read, the four CDK bootstrap roles and the API-key secret."
  }

  # moto ignores StringLike, so the listing condition is checked here only.
  assert {
    condition = alltrue([
      for policy in [aws_iam_role_policy.github_train_dvc[0].policy, aws_iam_role_policy.github_deploy[0].policy] : [
        for s in jsondecode(policy).Statement : s.Condition if s.Action == "s3:ListBucket"
      ] == [{ StringLike = { "s3:prefix" = ["dvc", "dvc/*"] } }]
    ])
    error_message = "Listing the bucket must be limited to the dvc/ prefix."
  }

  assert {
    condition = (
      output.github_auth == "oidc"
      && output.aws_region == "eu-west-1"
      && output.dvc_bucket_name == "mlops-dvc-20261202153000000000000001"
      && output.aws_train_role_arn == "arn:aws:iam::123456789012:role/mlops-template-github-train"
      && output.aws_deploy_role_arn == "arn:aws:iam::123456789012:role/mlops-template-github-deploy"
      && output.aws_data_role_arn == "arn:aws:iam::123456789012:role/mlops-template-github-data"
      && output.ci_user_name == null
      && output.aws_access_key_id == null
    )
    error_message = "OIDC mode must output the three role ARNs and no access-key values."
  }

  assert {
    condition = output.next_steps == join("\n", [
      "make configure-dvc BUCKET=mlops-dvc-20261202153000000000000001",
      "git add .dvc/config && git commit -m 'Point the DVC remote at s3://mlops-dvc-20261202153000000000000001/dvc'",
      "gh variable set AWS_REGION --repo octo-org/penguins-mlops --body eu-west-1",
      "gh variable set AWS_TRAIN_ROLE_ARN --repo octo-org/penguins-mlops --body \"$(terraform -chdir=infrastructure output -raw aws_train_role_arn)\"",
      "gh variable set AWS_DATA_ROLE_ARN --repo octo-org/penguins-mlops --body \"$(terraform -chdir=infrastructure output -raw aws_data_role_arn)\"",
      "gh variable set AWS_DEPLOY_ROLE_ARN --repo octo-org/penguins-mlops --body \"$(terraform -chdir=infrastructure output -raw aws_deploy_role_arn)\"",
    ])
    error_message = "next_steps must set exactly the variables the workflows read for OIDC."
  }

  assert {
    condition = [
      for s in jsondecode(aws_iam_role_policy.github_deploy[0].policy).Statement : s
      if strcontains(jsonencode(s), "secretsmanager")
      ] == [{
        Sid      = "ReadTheServiceApiKeys"
        Effect   = "Allow"
        Action   = "secretsmanager:GetSecretValue"
        Resource = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:PenguinsService/api-keys-??????"
    }]
    error_message = "The deploy role may only read (GetSecretValue) the one API-key secret, by its name and Secrets Manager's six-character suffix."
  }

  assert {
    condition     = !strcontains(aws_iam_role_policy.github_train_dvc[0].policy, "secretsmanager")
    error_message = "The training role must not read any secret."
  }
}

run "oidc_mode_reuses_an_existing_provider_instead_of_creating_a_second" {
  variables {
    existing_github_oidc_provider_arn = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
  }

  assert {
    condition     = length(aws_iam_openid_connect_provider.github) == 0
    error_message = "An existing provider must be reused, not created again."
  }

  assert {
    condition = toset([
      for role in [aws_iam_role.github_train[0], aws_iam_role.github_deploy[0]] :
      one(jsondecode(role.assume_role_policy).Statement).Principal.Federated
    ]) == toset([var.existing_github_oidc_provider_arn])
    error_message = "Both roles must trust the existing provider."
  }
}

# --- The identity: access key -------------------------------------------------------------

run "access_key_mode_creates_one_user_in_a_group_and_no_oidc_resource" {
  variables {
    github_auth = "access_key"
    # Left over from an OIDC setup in a user's tfvars: must not bring OIDC resources back.
    existing_github_oidc_provider_arn = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
  }

  assert {
    condition = (
      length(aws_iam_group.github_actions) == 1
      && length(aws_iam_group_policy.github_actions) == 1
      && length(aws_iam_user.github_actions) == 1
      && length(aws_iam_user_group_membership.github_actions) == 1
      && length(aws_iam_access_key.github_actions) == 1
      && length(aws_iam_openid_connect_provider.github) == 0
      && length(aws_iam_role.github_train) == 0
      && length(aws_iam_role_policy.github_train_dvc) == 0
      && length(aws_iam_role.github_data) == 0
      && length(aws_iam_role_policy.github_data_dvc) == 0
      && length(aws_iam_role.github_deploy) == 0
      && length(aws_iam_role_policy.github_deploy) == 0
    )
    error_message = "Access-key mode must create the user, its group, group policy and key, and no OIDC resource."
  }

  assert {
    condition = (
      aws_iam_user.github_actions[0].name == "mlops-template-github-actions"
      && aws_iam_group_policy.github_actions[0].group == aws_iam_group.github_actions[0].name
      && aws_iam_user_group_membership.github_actions[0].user == aws_iam_user.github_actions[0].name
      && aws_iam_user_group_membership.github_actions[0].groups == toset([aws_iam_group.github_actions[0].name])
      && aws_iam_access_key.github_actions[0].user == aws_iam_user.github_actions[0].name
    )
    error_message = "The user must get its permissions through its group, and the key must be the user's."
  }

  # The one user runs both workflows: DVC read and write plus the CDK roles and the API keys.
  assert {
    condition = toset(flatten([
      for s in jsondecode(aws_iam_group_policy.github_actions[0].policy).Statement : [
        for a in flatten([s.Action]) : [for r in flatten([s.Resource]) : "${s.Effect} ${a} ${r}"]
      ]
      ])) == toset([
      "Allow s3:ListBucket arn:aws:s3:::mlops-dvc-20261202153000000000000001",
      "Allow s3:GetBucketLocation arn:aws:s3:::mlops-dvc-20261202153000000000000001",
      "Allow s3:GetObject arn:aws:s3:::mlops-dvc-20261202153000000000000001/dvc/*",
      "Allow s3:PutObject arn:aws:s3:::mlops-dvc-20261202153000000000000001/dvc/*",
      "Allow s3:DeleteObject arn:aws:s3:::mlops-dvc-20261202153000000000000001/dvc/*",
      "Allow s3:AbortMultipartUpload arn:aws:s3:::mlops-dvc-20261202153000000000000001/dvc/*",
      "Allow s3:ListMultipartUploadParts arn:aws:s3:::mlops-dvc-20261202153000000000000001/dvc/*",
      "Allow sts:AssumeRole arn:aws:iam::123456789012:role/cdk-hnb659fds-deploy-role-123456789012-eu-west-1",
      "Allow sts:AssumeRole arn:aws:iam::123456789012:role/cdk-hnb659fds-file-publishing-role-123456789012-eu-west-1",
      "Allow sts:AssumeRole arn:aws:iam::123456789012:role/cdk-hnb659fds-image-publishing-role-123456789012-eu-west-1",
      "Allow sts:AssumeRole arn:aws:iam::123456789012:role/cdk-hnb659fds-lookup-role-123456789012-eu-west-1",
      "Allow secretsmanager:GetSecretValue arn:aws:secretsmanager:eu-west-1:123456789012:secret:PenguinsService/api-keys-??????",
    ])
    error_message = "The access-key user must get exactly DVC read and write, the four CDK bootstrap roles and the API-key secret."
  }

  assert {
    condition = (
      output.github_auth == "access_key"
      && output.ci_user_name == "mlops-template-github-actions"
      && output.aws_access_key_id == "placeholder-key-id"
      && issensitive(output.aws_secret_access_key)
      && issensitive(output.aws_access_key_id) == false
      && output.aws_train_role_arn == null
      && output.aws_data_role_arn == null
      && output.aws_deploy_role_arn == null
    )
    error_message = "Access-key mode must output the user and key (the secret marked sensitive) and no role ARN."
  }

  assert {
    condition = output.next_steps == join("\n", [
      "make configure-dvc BUCKET=mlops-dvc-20261202153000000000000001",
      "git add .dvc/config && git commit -m 'Point the DVC remote at s3://mlops-dvc-20261202153000000000000001/dvc'",
      "gh variable set AWS_REGION --repo octo-org/penguins-mlops --body eu-west-1",
      "terraform -chdir=infrastructure output -raw aws_access_key_id | gh secret set AWS_ACCESS_KEY_ID --repo octo-org/penguins-mlops",
      "terraform -chdir=infrastructure output -raw aws_secret_access_key | gh secret set AWS_SECRET_ACCESS_KEY --repo octo-org/penguins-mlops",
    ])
    error_message = "next_steps must pipe the key into the secrets the workflows read, never put it on a command line."
  }

  assert {
    condition     = !strcontains(aws_iam_group_policy.github_actions[0].policy, "kms:")
    error_message = "Without kms_key_arn no identity may get a KMS permission."
  }
}

# --- Options: a customer-managed key, access logs ------------------------------------------

run "a_kms_key_switches_the_bucket_to_sse_kms_and_grants_exactly_its_use_through_s3" {
  variables {
    github_auth            = "access_key"
    kms_key_arn            = "arn:aws:kms:eu-west-1:123456789012:key/0b5e3f5c-1111-2222-3333-444455556666"
    access_log_bucket_name = "org-access-logs"
  }

  assert {
    condition = [for rule in aws_s3_bucket_server_side_encryption_configuration.dvc.rule : {
      algorithm  = one(rule.apply_server_side_encryption_by_default).sse_algorithm
      key        = one(rule.apply_server_side_encryption_by_default).kms_master_key_id
      bucket_key = rule.bucket_key_enabled
      }] == [{
      algorithm  = "aws:kms"
      key        = "arn:aws:kms:eu-west-1:123456789012:key/0b5e3f5c-1111-2222-3333-444455556666"
      bucket_key = true
    }]
    error_message = "With kms_key_arn the bucket must use SSE-KMS with that key and an S3 Bucket Key."
  }

  assert {
    condition = toset([
      for s in jsondecode(aws_iam_group_policy.github_actions[0].policy).Statement : {
        actions   = toset(flatten([s.Action]))
        resource  = s.Resource
        condition = s.Condition
      } if length([for a in flatten([s.Action]) : a if startswith(a, "kms:")]) > 0
      ]) == toset([
      for action in ["kms:Decrypt", "kms:GenerateDataKey"] : {
        actions   = toset([action])
        resource  = "arn:aws:kms:eu-west-1:123456789012:key/0b5e3f5c-1111-2222-3333-444455556666"
        condition = { StringEquals = { "kms:ViaService" = "s3.eu-west-1.amazonaws.com" } }
      }
    ])
    error_message = "Writers must get exactly kms:Decrypt and kms:GenerateDataKey on the key, only through S3 in the region."
  }

  assert {
    condition = (
      length(aws_s3_bucket_logging.dvc) == 1
      && aws_s3_bucket_logging.dvc[0].bucket == aws_s3_bucket.dvc.id
      && aws_s3_bucket_logging.dvc[0].target_bucket == "org-access-logs"
      && aws_s3_bucket_logging.dvc[0].target_prefix == "s3-access-logs/dvc/"
    )
    error_message = "Naming a log bucket must turn access logging on, into that bucket and prefix."
  }
}

run "readers_get_only_decrypt_on_the_kms_key" {
  variables {
    kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/0b5e3f5c-1111-2222-3333-444455556666"
  }

  assert {
    condition = [
      for s in jsondecode(aws_iam_role_policy.github_deploy[0].policy).Statement : s.Action
      if length([for a in flatten([s.Action]) : a if startswith(a, "kms:")]) > 0
    ] == ["kms:Decrypt"]
    error_message = "The deploy role reads DVC only: kms:Decrypt and no GenerateDataKey."
  }

  assert {
    condition     = !strcontains(aws_iam_role_policy.github_train_dvc[0].policy, "sts:")
    error_message = "The training role must not be able to assume any role, KMS key or not."
  }
}

# --- Names follow the variables, the partition, the account and the region -----------------

run "arns_and_subjects_follow_repository_qualifier_secret_partition_account_and_region" {
  providers = {
    aws = aws.china
  }

  variables {
    aws_region           = "cn-north-1"
    github_repository    = "another-org/fork.of_it"
    cdk_qualifier        = "custom01"
    api_keys_secret_name = "prod/prediction-api-keys"
    kms_key_arn          = "arn:aws-cn:kms:cn-north-1:210987654321:key/0b5e3f5c-1111-2222-3333-444455556666"
  }

  override_data {
    target = data.aws_caller_identity.current
    values = { account_id = "210987654321" }
  }

  assert {
    condition = toset(flatten([
      for s in jsondecode(aws_iam_role_policy.github_deploy[0].policy).Statement : flatten([s.Resource])
      if s.Action == "sts:AssumeRole"
      ])) == toset([
      for role in ["deploy", "file-publishing", "image-publishing", "lookup"] :
      "arn:aws-cn:iam::210987654321:role/cdk-custom01-${role}-role-210987654321-cn-north-1"
    ])
    error_message = "The CDK role ARNs must follow the partition, account, region and qualifier."
  }

  assert {
    condition = one(jsondecode(aws_iam_role.github_deploy[0].assume_role_policy).Statement).Condition.StringEquals["token.actions.githubusercontent.com:sub"] == [
      "repo:another-org/fork.of_it:ref:refs/heads/main",
      "repo:another-org/fork.of_it:environment:production",
    ]
    error_message = "The trust subjects must follow github_repository."
  }

  assert {
    condition     = strcontains(aws_iam_role_policy.github_deploy[0].policy, ":secret:prod/prediction-api-keys-??????")
    error_message = "The readable secret must be the one api_keys_secret_name names."
  }

  assert {
    condition     = strcontains(aws_iam_role_policy.github_train_dvc[0].policy, "\"kms:ViaService\": \"s3.cn-north-1.amazonaws.com.cn\"")
    error_message = "kms:ViaService must name S3 in the region and partition of the bucket."
  }

  assert {
    condition     = output.aws_region == "cn-north-1"
    error_message = "The region output must be the configured region."
  }
}

# --- Variable validations: each run breaks every validated variable at once ----------------

run "edge_values_are_accepted" {
  variables {
    aws_region                             = "us-gov-west-1"
    github_repository                      = "me/repo.name_2"
    name_prefix                            = "abcdefghijklmnopqrstuvwxyz0123456789+=,@"
    cdk_qualifier                          = "q_12345-ab"
    bucket_name_prefix                     = "a0123456789.0123456789-0123456789abcd"
    noncurrent_version_expiration_days     = 1
    abort_incomplete_multipart_upload_days = 1
  }

  assert {
    condition     = aws_s3_bucket.dvc.bucket_prefix == "a0123456789.0123456789-0123456789abcd"
    error_message = "A 37-character bucket prefix (63 with S3's suffix) must be accepted."
  }

  assert {
    condition     = output.aws_region == "us-gov-west-1"
    error_message = "GovCloud region codes must be accepted."
  }
}

run "invalid_values_are_rejected_1" {
  command = plan

  variables {
    aws_region                             = "EU-WEST-1"
    github_repository                      = "octo-org/*"
    github_auth                            = "keys"
    existing_github_oidc_provider_arn      = "arn:aws:iam::123456789012:oidc-provider/example.com"
    name_prefix                            = "abcdefghijklmnopqrstuvwxyz0123456789+=,@x"
    cdk_qualifier                          = "qualifier-11"
    bucket_name_prefix                     = "Mlops-dvc-"
    noncurrent_version_expiration_days     = 0
    abort_incomplete_multipart_upload_days = 1.5
    kms_key_arn                            = "alias/my-key"
    api_keys_secret_name                   = "*"
  }

  expect_failures = [
    var.aws_region,
    var.github_repository,
    var.github_auth,
    var.existing_github_oidc_provider_arn,
    var.name_prefix,
    var.cdk_qualifier,
    var.bucket_name_prefix,
    var.noncurrent_version_expiration_days,
    var.abort_incomplete_multipart_upload_days,
    var.kms_key_arn,
    var.api_keys_secret_name,
  ]
}

run "invalid_values_are_rejected_2" {
  command = plan

  variables {
    aws_region                             = "eu-west"
    github_repository                      = "*/penguins-mlops"
    github_auth                            = "OIDC"
    name_prefix                            = "has space"
    cdk_qualifier                          = ""
    bucket_name_prefix                     = "a0123456789.0123456789-0123456789abcde"
    noncurrent_version_expiration_days     = -1
    abort_incomplete_multipart_upload_days = 0
    kms_key_arn                            = "arn:aws:kms:eu-west-1:123456789012:alias/my-key"
  }

  expect_failures = [
    var.aws_region,
    var.github_repository,
    var.github_auth,
    var.name_prefix,
    var.cdk_qualifier,
    var.bucket_name_prefix,
    var.noncurrent_version_expiration_days,
    var.abort_incomplete_multipart_upload_days,
    var.kms_key_arn,
  ]
}

# Each of these would widen or break the OIDC trust: an owner without a repository, a
# trailing slash, a URL, a subject spliced into the value.
run "repositories_that_would_widen_the_trust_are_rejected_1" {
  command = plan

  variables {
    github_repository = "octo-org"
  }

  expect_failures = [var.github_repository]
}

run "repositories_that_would_widen_the_trust_are_rejected_2" {
  command = plan

  variables {
    github_repository = "octo-org/repo/"
  }

  expect_failures = [var.github_repository]
}

run "repositories_that_would_widen_the_trust_are_rejected_3" {
  command = plan

  variables {
    github_repository = "https://github.com/octo-org/repo"
  }

  expect_failures = [var.github_repository]
}

run "repositories_that_would_widen_the_trust_are_rejected_4" {
  command = plan

  variables {
    github_repository = "octo-org/repo:ref:refs/heads/main"
  }

  expect_failures = [var.github_repository]
}

# --- Teardown ------------------------------------------------------------------------------

# Last on purpose: `terraform test` destroys what the runs applied when the file ends, and
# the destroy guard lets that happen only once force_destroy = true has been applied. So this
# run and the suite's own teardown are the documented teardown (set force_destroy = true,
# apply, destroy); if the guard stopped it, the suite would fail. The apply against moto
# (test_apply.py) shows the other half: a plain destroy changes nothing.
run "force_destroy_true_disarms_the_guard_for_the_documented_teardown" {
  variables {
    force_destroy = true
  }

  assert {
    condition     = aws_s3_bucket.dvc.force_destroy && terraform_data.destroy_guard.input
    error_message = "force_destroy = true must reach the bucket and disarm the destroy guard."
  }
}
