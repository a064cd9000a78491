# Names match what the rest of the repository reads: `make configure-dvc BUCKET=...` takes
# dvc_bucket_name; the workflows read the repository variables AWS_REGION,
# AWS_TRAIN_ROLE_ARN, AWS_DATA_ROLE_ARN and AWS_DEPLOY_ROLE_ARN (OIDC) or the secrets AWS_ACCESS_KEY_ID and
# AWS_SECRET_ACCESS_KEY (access key). Outputs of the mode not in use are null.

output "dvc_bucket_name" {
  description = "Name of the DVC bucket: `make configure-dvc BUCKET=<this>`."
  value       = aws_s3_bucket.dvc.id
}

output "dvc_remote_url" {
  description = "The DVC remote URL that `make configure-dvc` writes into .dvc/config."
  value       = "s3://${aws_s3_bucket.dvc.id}/${local.dvc_prefix}"
}

output "aws_region" {
  description = "Region of the bucket and of the deployment: the AWS_REGION repository variable."
  value       = local.region
}

output "github_auth" {
  description = "The identity mode in use: oidc or access_key."
  value       = var.github_auth
}

output "aws_train_role_arn" {
  description = "OIDC mode: role for training runs (pull requests, branches), the AWS_TRAIN_ROLE_ARN repository variable."
  value       = one(aws_iam_role.github_train[*].arn)
}

output "aws_data_role_arn" {
  description = "OIDC mode: read-only role that pulls a pull request's DVC-tracked data before training, the AWS_DATA_ROLE_ARN repository variable."
  value       = one(aws_iam_role.github_data[*].arn)
}

output "aws_deploy_role_arn" {
  description = "OIDC mode: role for deployments from main or the production environment, the AWS_DEPLOY_ROLE_ARN repository variable."
  value       = one(aws_iam_role.github_deploy[*].arn)
}

output "ci_user_name" {
  description = "Access-key mode: the IAM user GitHub Actions signs in as."
  value       = one(aws_iam_user.github_actions[*].name)
}

output "aws_access_key_id" {
  description = "Access-key mode: the AWS_ACCESS_KEY_ID secret."
  value       = one(aws_iam_access_key.github_actions[*].id)
}

output "aws_secret_access_key" {
  description = "Access-key mode: the AWS_SECRET_ACCESS_KEY secret. Pipe it into `gh secret set`; never print it."
  value       = one(aws_iam_access_key.github_actions[*].secret)
  sensitive   = true
}

output "next_steps" {
  description = "The commands that carry these outputs into .dvc/config and the repository's GitHub settings (run from the repository root; gh must be authenticated)."
  value = join("\n", concat(
    [
      "make configure-dvc BUCKET=${aws_s3_bucket.dvc.id}",
      "git add .dvc/config && git commit -m 'Point the DVC remote at s3://${aws_s3_bucket.dvc.id}/${local.dvc_prefix}'",
      "gh variable set AWS_REGION --repo ${var.github_repository} --body ${local.region}",
    ],
    var.github_auth == "oidc" ? [
      for role in ["train", "data", "deploy"] :
      "gh variable set AWS_${upper(role)}_ROLE_ARN --repo ${var.github_repository} --body \"$(terraform -chdir=infrastructure output -raw aws_${role}_role_arn)\""
      ] : [
      for secret in ["aws_access_key_id", "aws_secret_access_key"] :
      "terraform -chdir=infrastructure output -raw ${secret} | gh secret set ${upper(secret)} --repo ${var.github_repository}"
    ],
  ))
}
