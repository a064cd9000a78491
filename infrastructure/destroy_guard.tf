# `terraform destroy` walks the dependency graph backwards: every bucket setting and the CI
# identities would be deleted before the bucket, and only the bucket's own deletion fails on
# a bucket that still holds data (BucketNotEmpty). Without this guard, a plain destroy would
# leave the model history in place but stripped of its public-access block, policy,
# encryption settings and versioning.
#
# The guard depends on everything else, so a destroy reaches it first; its destroy-time
# check fails while force_destroy is false, and nothing else is touched. The documented
# teardown (set force_destroy = true, apply, destroy; docs/infrastructure.md) records the
# opt-in in the guard first.
# `prevent_destroy` cannot do this job: it takes no variable, so it would block the
# documented teardown too.
resource "terraform_data" "destroy_guard" {
  input = var.force_destroy

  depends_on = [
    aws_s3_bucket.dvc,
    aws_s3_bucket_public_access_block.dvc,
    aws_s3_bucket_ownership_controls.dvc,
    aws_s3_bucket_versioning.dvc,
    aws_s3_bucket_server_side_encryption_configuration.dvc,
    aws_s3_bucket_lifecycle_configuration.dvc,
    aws_s3_bucket_logging.dvc,
    aws_s3_bucket_policy.dvc,
    aws_iam_openid_connect_provider.github,
    aws_iam_role.github_train,
    aws_iam_role_policy.github_train_dvc,
    aws_iam_role.github_data,
    aws_iam_role_policy.github_data_dvc,
    aws_iam_role.github_deploy,
    aws_iam_role_policy.github_deploy,
    aws_iam_group.github_actions,
    aws_iam_group_policy.github_actions,
    aws_iam_user.github_actions,
    aws_iam_user_group_membership.github_actions,
    aws_iam_access_key.github_actions,
  ]

  provisioner "local-exec" {
    when = destroy
    # `exit` and `echo ... &&` read the same in sh and in cmd.exe (Terraform on Windows).
    command = self.input ? "exit 0" : "echo Refusing to destroy: force_destroy is false, so the DVC bucket, its protections and the CI identities stay as they are. To tear everything down, set force_destroy = true, apply, then destroy. && exit 1"
  }
}
