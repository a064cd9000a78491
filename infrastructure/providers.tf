provider "aws" {
  region = var.aws_region

  # Every resource carries these tags, so the bootstrap resources are easy to find, cost and
  # clean up; `var.tags` adds (or overrides) the organisation's own.
  default_tags {
    tags = merge(
      {
        Project   = var.name_prefix
        Purpose   = "dvc-remote-and-github-actions-identity"
        ManagedBy = "terraform"
        # Where the code that owns these resources lives.
        Repository = var.github_repository
      },
      var.tags,
    )
  }
}
