# Example root: fraudlens in a VPC of its own, in one region.
#
#   cp terraform.tfvars.example terraform.tfvars   # then edit it
#   terraform init && terraform plan && terraform apply
#
# modules/network makes the VPC: the load balancer in public subnets, the Fargate tasks and
# the database in private subnets without public IPs, which reach ECR, S3, SQS, Secrets
# Manager and CloudWatch Logs through VPC endpoints (and the internet through a NAT gateway
# only if nat_gateway asks for one). The load balancer serves HTTPS with your ACM
# certificate. Multi-AZ database, WAF, deletion protection and one-year log retention are
# on: this is the production shape.

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

module "network" {
  source = "../../modules/network"

  name               = var.name
  cidr_block         = var.vpc_cidr
  availability_zones = coalesce(var.availability_zones, ["${var.region}a", "${var.region}b"])
  nat_gateway        = var.nat_gateway
  vpc_endpoints      = var.vpc_endpoints
  # The flow logs use the deployment's key (its policy lets CloudWatch Logs use it).
  kms_key_arn = module.fraudlens.kms_key_arn
}

module "fraudlens" {
  source = "../../modules/fraudlens"

  name                = var.name
  vpc_id              = module.network.vpc_id
  public_subnet_ids   = module.network.public_subnet_ids
  private_subnet_ids  = module.network.private_subnet_ids
  allowed_cidr_blocks = var.allowed_cidr_blocks
  certificate_arn     = var.certificate_arn
  service_domain_name = var.service_domain_name
  enable_waf          = var.enable_waf

  image_tag = var.image_tag

  worker_count     = var.worker_count
  worker_max_count = var.worker_max_count

  enable_card_processor = var.enable_card_processor
  enable_sagemaker      = var.enable_sagemaker

  db_instance_class       = var.db_instance_class
  db_multi_az             = var.db_multi_az
  db_deletion_protection  = var.db_deletion_protection
  db_skip_final_snapshot  = var.db_skip_final_snapshot
  alb_deletion_protection = var.alb_deletion_protection
  log_retention_days      = var.log_retention_days
  force_destroy           = var.force_destroy
}
