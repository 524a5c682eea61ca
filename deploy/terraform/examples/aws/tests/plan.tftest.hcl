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
  mock_data "aws_vpc" {
    defaults = { id = "vpc-0123456789abcdef0" }
  }
  mock_data "aws_subnets" {
    defaults = { ids = ["subnet-0a", "subnet-0b", "subnet-0c"] }
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
}

run "example" {
  command = apply

  assert {
    condition     = output.service_url == "http://fraudlens-alb-1.eu-west-1.elb.amazonaws.com"
    error_message = "The example must expose the service URL."
  }

  assert {
    condition     = output.ecr_repository_url == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/fraudlens"
    error_message = "The example must expose the ECR repository."
  }

  assert {
    condition     = strcontains(output.migrate_command, "assignPublicIp=ENABLED")
    error_message = "Tasks in the default VPC need public IPs."
  }
}
