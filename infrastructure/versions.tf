# The AWS provider constraint admits the last 5.x release and every 6.x: the configuration
# uses only arguments and attributes both majors have (the region comes from var.aws_region,
# not from `data.aws_region`, whose attribute was renamed in 6.0), and the tests run on 5.100.
# 7.0 is excluded until it has been tried. Commit the `.terraform.lock.hcl` that
# `make infra-lock` writes for your platforms (docs/infrastructure.md), so CI and every
# teammate install the same provider build.
terraform {
  required_version = ">= 1.9.0, < 2.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100, < 7.0"
    }
  }
}
