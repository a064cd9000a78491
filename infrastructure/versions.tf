# Versions are pinned so that `terraform init` on a fresh clone resolves the provider this
# configuration was written and reviewed against. Provider 6.x is required: it reads the
# current region as `data.aws_region.current.region` and lets the OIDC provider omit the
# legacy certificate thumbprints. Commit the `.terraform.lock.hcl` that `terraform init`
# writes, so CI and every teammate install the same provider build.
terraform {
  required_version = ">= 1.9.0, < 2.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
  }
}
