# `make infra-validate` runs this suite with `terraform test`: the real AWS provider plans the
# configuration in both modes, so attribute names, block shapes and the policy JSON the
# provider renders are checked against its schema, which the python-hcl2 tests cannot do.
# Every run is a plan and the provider gets placeholder credentials with every AWS call
# skipped or overridden: no AWS account is needed, only the provider itself (Terraform
# registry or a mirror).

provider "aws" {
  region = "eu-west-1"

  access_key = "placeholder"
  # checkov:skip=CKV_SECRET_6: A placeholder, not a credential: no run reaches AWS (every call is skipped or overridden).
  secret_key = "placeholder"

  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
}

# The only data source that would call AWS (sts:GetCallerIdentity).
override_data {
  target = data.aws_caller_identity.current
  values = { account_id = "123456789012" }
}

variables {
  aws_region        = "eu-west-1"
  github_repository = "octo-org/penguins-mlops"
}

run "oidc_mode_creates_the_provider_and_roles_and_no_user" {
  command = plan

  assert {
    condition = (
      length(aws_iam_openid_connect_provider.github) == 1
      && length(aws_iam_role.github_train) == 1
      && length(aws_iam_role.github_deploy) == 1
      && length(aws_iam_user.github_actions) == 0
      && length(aws_iam_access_key.github_actions) == 0
    )
    error_message = "OIDC mode must create the provider and both roles, and no IAM user or key."
  }

  assert {
    condition = one([
      for rule in aws_s3_bucket_server_side_encryption_configuration.dvc.rule :
      one(rule.apply_server_side_encryption_by_default).sse_algorithm
    ]) == "AES256"
    error_message = "Without kms_key_arn the bucket must use SSE-S3."
  }

  assert {
    condition     = one(aws_s3_bucket_versioning.dvc.versioning_configuration).status == "Enabled"
    error_message = "Versioning must be enabled."
  }

  assert {
    condition     = aws_s3_bucket.dvc.force_destroy == false
    error_message = "force_destroy must be off by default."
  }
}

run "trust_and_cdk_grants_render_as_intended" {
  command = plan

  variables {
    # A known provider ARN, so the trust policies are known at plan time.
    existing_github_oidc_provider_arn = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
  }

  assert {
    condition     = length(aws_iam_openid_connect_provider.github) == 0
    error_message = "An existing provider must be reused, not created again."
  }

  assert {
    condition = jsondecode(data.aws_iam_policy_document.github_deploy_trust[0].json).Statement[0].Condition.StringEquals["token.actions.githubusercontent.com:sub"] == [
      "repo:octo-org/penguins-mlops:ref:refs/heads/main",
      "repo:octo-org/penguins-mlops:environment:production",
    ]
    error_message = "The deploy role must trust exactly main and the production environment."
  }

  assert {
    condition     = jsondecode(data.aws_iam_policy_document.github_deploy_trust[0].json).Statement[0].Condition.StringEquals["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
    error_message = "The deploy role must require the sts.amazonaws.com audience."
  }

  assert {
    condition = jsondecode(data.aws_iam_policy_document.github_train_trust[0].json).Statement[0].Condition.StringLike["token.actions.githubusercontent.com:sub"] == [
      "repo:octo-org/penguins-mlops:pull_request",
      "repo:octo-org/penguins-mlops:ref:refs/heads/*",
    ]
    error_message = "The training role must trust this repository's pull requests and branches only."
  }

  assert {
    condition = toset(jsondecode(data.aws_iam_policy_document.cdk_deploy.json).Statement[0].Resource) == toset([
      "arn:aws:iam::123456789012:role/cdk-hnb659fds-deploy-role-123456789012-eu-west-1",
      "arn:aws:iam::123456789012:role/cdk-hnb659fds-file-publishing-role-123456789012-eu-west-1",
      "arn:aws:iam::123456789012:role/cdk-hnb659fds-image-publishing-role-123456789012-eu-west-1",
      "arn:aws:iam::123456789012:role/cdk-hnb659fds-lookup-role-123456789012-eu-west-1",
    ])
    error_message = "Deployment must assume exactly the four CDK bootstrap roles."
  }
}

run "access_key_mode_creates_the_user_and_no_oidc_resource" {
  command = plan

  variables {
    github_auth            = "access_key"
    kms_key_arn            = "arn:aws:kms:eu-west-1:123456789012:key/0b5e3f5c-1111-2222-3333-444455556666"
    access_log_bucket_name = "org-access-logs"
  }

  assert {
    condition = (
      length(aws_iam_user.github_actions) == 1
      && length(aws_iam_access_key.github_actions) == 1
      && length(aws_iam_group_policy.github_actions) == 1
      && length(aws_iam_openid_connect_provider.github) == 0
      && length(aws_iam_role.github_train) == 0
      && length(aws_iam_role.github_deploy) == 0
    )
    error_message = "Access-key mode must create the user, its group policy and key, and no OIDC resource."
  }

  assert {
    condition = one([
      for rule in aws_s3_bucket_server_side_encryption_configuration.dvc.rule :
      one(rule.apply_server_side_encryption_by_default).sse_algorithm
    ]) == "aws:kms"
    error_message = "With kms_key_arn the bucket must use SSE-KMS."
  }

  assert {
    condition     = length(aws_s3_bucket_logging.dvc) == 1
    error_message = "Naming a log bucket must turn access logging on."
  }
}

run "a_wildcard_repository_is_rejected" {
  command = plan

  variables {
    github_repository = "octo-org/*"
  }

  expect_failures = [var.github_repository]
}

run "an_unknown_mode_is_rejected" {
  command = plan

  variables {
    github_auth = "keys"
  }

  expect_failures = [var.github_auth]
}
