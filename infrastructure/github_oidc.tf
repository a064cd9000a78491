# github_auth = "oidc": GitHub Actions exchanges the short-lived OIDC token of each job for
# temporary credentials of one of three roles. Nothing long-lived exists to leak or rotate,
# and each role is usable only from the runs its trust policy names.

locals {
  github_oidc_issuer_host = "token.actions.githubusercontent.com"
  # The audience aws-actions/configure-aws-credentials requests for its token.
  github_oidc_audience = "sts.amazonaws.com"

  github_oidc_provider_arn = (
    var.existing_github_oidc_provider_arn != null
    ? var.existing_github_oidc_provider_arn
    : one(aws_iam_openid_connect_provider.github[*].arn)
  )

  # The token's `sub` claim identifies the run. With GitHub's default claim template it is
  # repo:OWNER/REPO:pull_request for pull-request events, repo:OWNER/REPO:ref:refs/heads/BRANCH
  # for branch pushes and dispatches, and repo:OWNER/REPO:environment:NAME for any job that
  # declares a deployment environment (that form replaces the ref form).
  #
  # Training runs on pull requests and branches: it reads and writes the DVC remote but can
  # deploy nothing.
  github_train_subjects = [
    "repo:${var.github_repository}:pull_request",
    "repo:${var.github_repository}:ref:refs/heads/*",
  ]
  # Deploying is limited to main and to the `production` environment. A pull request or a
  # branch push never carries the main subject; the environment subject is issued to any job
  # that names the environment, so the environment's deployment-branch rule in GitHub must
  # allow main only (docs/infrastructure.md gives the command) for this trust to mean "main only".
  github_deploy_subjects = [
    "repo:${var.github_repository}:ref:refs/heads/main",
    "repo:${var.github_repository}:environment:production",
  ]
}

# At most one provider per issuer URL exists in an account: reuse an existing one through
# var.existing_github_oidc_provider_arn instead of failing to create a second.
resource "aws_iam_openid_connect_provider" "github" {
  count = var.github_auth == "oidc" && var.existing_github_oidc_provider_arn == null ? 1 : 0

  url            = "https://${local.github_oidc_issuer_host}"
  client_id_list = [local.github_oidc_audience]
  # No thumbprint_list: IAM verifies GitHub's issuer against its own trusted root CAs, so
  # pinned thumbprints would only break the trust at GitHub's next certificate rotation.
}

# One trust policy per kind of run. Training (and its data pull) uses StringLike for the
# branch wildcard; the repository part is literal, so no other repository (a fork included)
# matches. Deploying uses StringEquals: exact subjects, no pattern can widen them.
data "aws_iam_policy_document" "github_trust" {
  for_each = var.github_auth == "oidc" ? {
    train  = { sid = "GitHubActionsTrainingRuns", test = "StringLike", subjects = local.github_train_subjects }
    deploy = { sid = "GitHubActionsDeployRuns", test = "StringEquals", subjects = local.github_deploy_subjects }
  } : {}

  statement {
    sid     = each.value.sid
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.github_oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.github_oidc_issuer_host}:aud"
      values   = [local.github_oidc_audience]
    }

    condition {
      test     = each.value.test
      variable = "${local.github_oidc_issuer_host}:sub"
      values   = each.value.subjects
    }
  }
}

resource "aws_iam_role" "github_train" {
  count = var.github_auth == "oidc" ? 1 : 0

  name                 = "${var.name_prefix}-github-train"
  description          = "GitHub Actions training runs of ${var.github_repository}: read and write the DVC remote."
  assume_role_policy   = data.aws_iam_policy_document.github_trust["train"].json
  max_session_duration = 3600
}

resource "aws_iam_role_policy" "github_train_dvc" {
  count = var.github_auth == "oidc" ? 1 : 0

  name   = "dvc-read-write"
  role   = aws_iam_role.github_train[0].id
  policy = data.aws_iam_policy_document.dvc_read_write.json
}

# The Train workflow's data job pulls the data a pull request trains on (`dvc add`-ed files)
# before any of the PR's code runs: read only, so nothing it holds can replace a model.
resource "aws_iam_role" "github_data" {
  count = var.github_auth == "oidc" ? 1 : 0

  name                 = "${var.name_prefix}-github-data"
  description          = "GitHub Actions training runs of ${var.github_repository}: read the DVC remote (the data a pull request trains on)."
  assume_role_policy   = data.aws_iam_policy_document.github_trust["train"].json
  max_session_duration = 3600
}

resource "aws_iam_role_policy" "github_data_dvc" {
  count = var.github_auth == "oidc" ? 1 : 0

  name   = "dvc-read"
  role   = aws_iam_role.github_data[0].id
  policy = data.aws_iam_policy_document.dvc_read.json
}

resource "aws_iam_role" "github_deploy" {
  count = var.github_auth == "oidc" ? 1 : 0

  name                 = "${var.name_prefix}-github-deploy"
  description          = "GitHub Actions deployments of ${var.github_repository} from main: read the DVC remote, assume the CDK bootstrap roles."
  assume_role_policy   = data.aws_iam_policy_document.github_trust["deploy"].json
  max_session_duration = 3600
}

resource "aws_iam_role_policy" "github_deploy" {
  count = var.github_auth == "oidc" ? 1 : 0

  name   = "dvc-read-and-cdk-deploy"
  role   = aws_iam_role.github_deploy[0].id
  policy = data.aws_iam_policy_document.dvc_read_and_cdk_deploy.json
}
