# Example root: fraudlens in the account's default VPC, in one region.
#
#   cp terraform.tfvars.example terraform.tfvars   # then edit it
#   terraform init && terraform plan && terraform apply
#
# The default VPC has public subnets only, so the tasks get public IPs to reach ECR, S3, SQS
# and Secrets Manager (no NAT gateway to pay for); their security groups still accept no
# traffic but the load balancer's. The database is never publicly accessible. For
# production, pass a VPC with private subnets and a NAT gateway or VPC endpoints, and set
# assign_public_ip = false.

terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }

  # Remote state, as the reference deployment kept it: an S3 bucket (versioned, created
  # once by hand or by a separate bootstrap configuration) and, for state locking, either
  # S3's own lock file (use_lockfile, Terraform >= 1.10) or a DynamoDB table with a string
  # hash key "LockID" (older Terraform). Uncomment, fill in, then run `terraform init`
  # (or `terraform init -migrate-state` to move an existing local state):
  #
  # backend "s3" {
  #   bucket       = "my-terraform-state-bucket"
  #   key          = "fraudlens/terraform.tfstate"
  #   region       = "eu-west-1"
  #   encrypt      = true
  #   use_lockfile = true
  #   # dynamodb_table = "terraform-locks"   # instead of use_lockfile before Terraform 1.10
  # }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project = "fraudlens"
      Owner   = var.owner
    }
  }
}

data "aws_vpc" "default" {
  default = true
}

data "aws_subnets" "default" {
  filter {
    name   = "vpc-id"
    values = [data.aws_vpc.default.id]
  }

  filter {
    name   = "default-for-az"
    values = ["true"]
  }
}

module "fraudlens" {
  source = "../../modules/fraudlens"

  name                = var.name
  vpc_id              = data.aws_vpc.default.id
  public_subnet_ids   = data.aws_subnets.default.ids
  private_subnet_ids  = data.aws_subnets.default.ids
  assign_public_ip    = true
  allowed_cidr_blocks = var.allowed_cidr_blocks
  certificate_arn     = var.certificate_arn

  image_tag = var.image_tag

  worker_count     = var.worker_count
  worker_max_count = var.worker_max_count

  enable_card_processor = var.enable_card_processor
  enable_sagemaker      = var.enable_sagemaker

  db_deletion_protection = var.db_deletion_protection
  db_skip_final_snapshot = var.db_skip_final_snapshot
  force_destroy          = var.force_destroy
}
