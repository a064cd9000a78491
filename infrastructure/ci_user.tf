# github_auth = "access_key": the setup the original template described, kept for accounts
# where an OIDC provider cannot be created. One IAM user runs both workflows with an access
# key stored as GitHub secrets. Prefer "oidc": this key is long-lived, sits in the Terraform
# state, and must be rotated by hand (`terraform apply -replace=aws_iam_access_key.github_actions[0]`).

# Permissions go to a group, never directly to the user, so they stay reviewable in one place
# and a replacement user (key rotation through a new user) inherits them unchanged.
resource "aws_iam_group" "github_actions" {
  count = var.github_auth == "access_key" ? 1 : 0

  name = "${var.name_prefix}-github-actions"
}

resource "aws_iam_group_policy" "github_actions" {
  count = var.github_auth == "access_key" ? 1 : 0

  name   = "dvc-read-write-and-cdk-deploy"
  group  = aws_iam_group.github_actions[0].name
  policy = data.aws_iam_policy_document.dvc_read_write_and_cdk_deploy.json
}

resource "aws_iam_user" "github_actions" {
  # checkov:skip=CKV_AWS_273: A machine identity for GitHub Actions, which cannot sign in through SSO; this mode exists for accounts that cannot use OIDC (github_auth = "oidc" creates no user at all).
  count = var.github_auth == "access_key" ? 1 : 0

  name = "${var.name_prefix}-github-actions"
}

resource "aws_iam_user_group_membership" "github_actions" {
  count = var.github_auth == "access_key" ? 1 : 0

  user   = aws_iam_user.github_actions[0].name
  groups = [aws_iam_group.github_actions[0].name]
}

# The secret is written to the Terraform state in clear text (so `terraform output` can hand
# it to `gh secret set`): keep the state in an encrypted, access-controlled backend.
resource "aws_iam_access_key" "github_actions" {
  count = var.github_auth == "access_key" ? 1 : 0

  user = aws_iam_user.github_actions[0].name
}
