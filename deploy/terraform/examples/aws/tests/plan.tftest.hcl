# Offline plan of the example with a mocked AWS provider (Terraform >= 1.7):
#   terraform init -backend=false && terraform test

mock_provider "aws" {
  mock_data "aws_region" {
    defaults = { name = "eu-west-1" }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_resource "aws_vpc" {
    defaults = { id = "vpc-0123456789abcdef0", cidr_block = "10.40.0.0/16" }
  }
  mock_resource "aws_kms_key" {
    defaults = {
      arn    = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
      key_id = "11111111-2222-3333-4444-555555555555"
    }
  }
  mock_resource "aws_wafv2_web_acl" {
    defaults = { arn = "arn:aws:wafv2:eu-west-1:123456789012:regional/webacl/fraudlens-alb/1" }
  }
  mock_data "aws_elb_service_account" {
    defaults = { arn = "arn:aws:iam::156460612806:root" }
  }
  mock_resource "aws_db_instance" {
    defaults = {
      address = "fraudlens-db.example.eu-west-1.rds.amazonaws.com"
      port    = 5432
      master_user_secret = [
        { secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-1", kms_key_id = "", secret_status = "active" },
      ]
    }
  }
  mock_resource "aws_ecr_repository" {
    defaults = {
      arn            = "arn:aws:ecr:eu-west-1:123456789012:repository/fraudlens"
      repository_url = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/fraudlens"
    }
  }
  mock_resource "aws_lb" {
    defaults = {
      arn      = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/fraudlens-alb/1"
      dns_name = "fraudlens-alb-1.eu-west-1.elb.amazonaws.com"
    }
  }
  mock_resource "aws_lb_target_group" {
    defaults = { arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/fraudlens-svc/1" }
  }
  mock_resource "aws_ecs_cluster" {
    defaults = { arn = "arn:aws:ecs:eu-west-1:123456789012:cluster/fraudlens" }
  }
  mock_resource "aws_ecs_task_definition" {
    defaults = { arn = "arn:aws:ecs:eu-west-1:123456789012:task-definition/fraudlens-task:1" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/fraudlens-role" }
  }
  mock_resource "aws_sqs_queue" {
    defaults = { arn = "arn:aws:sqs:eu-west-1:123456789012:fraudlens-q" }
  }
  mock_resource "aws_s3_bucket" {
    defaults = { arn = "arn:aws:s3:::fraudlens-bucket" }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = { arn = "arn:aws:logs:eu-west-1:123456789012:log-group:/ecs/fraudlens/x" }
  }
  mock_resource "aws_appautoscaling_policy" {
    defaults = { arn = "arn:aws:autoscaling:eu-west-1:123456789012:scalingPolicy:1" }
  }
}

variables {
  allowed_cidr_blocks = ["203.0.113.0/24"]
  certificate_arn     = "arn:aws:acm:eu-west-1:123456789012:certificate/abc"
  service_domain_name = "fraud.example.com"
  image_tag           = "v1"
}

run "example" {
  command = apply

  assert {
    condition     = output.service_url == "https://fraud.example.com"
    error_message = "The example serves HTTPS on the certificate's name."
  }

  assert {
    condition     = output.ecr_repository_url == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/fraudlens"
    error_message = "The example must expose the ECR repository."
  }

  assert {
    condition     = strcontains(output.migrate_command, "assignPublicIp=DISABLED")
    error_message = "Tasks in the private subnets get no public IP."
  }

  assert {
    condition = (
      module.fraudlens.kms_key_arn == "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
      && output.kms_key_arn == module.fraudlens.kms_key_arn
      && output.nat_public_ips == []
    )
    error_message = "One deployment key; no NAT gateway by default (VPC endpoints instead)."
  }

  assert {
    condition = (
      toset(module.network.vpc_endpoint_services) == toset(["ecr.api", "ecr.dkr", "sqs", "secretsmanager", "logs", "s3"])
      && length(module.network.private_subnet_ids) == 2
    )
    error_message = "The example's tasks reach ECR, S3, SQS, Secrets Manager and CloudWatch Logs through VPC endpoints, in two zones."
  }
}
