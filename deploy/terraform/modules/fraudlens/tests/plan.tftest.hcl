# Offline plan checks: `terraform test` with a mocked AWS provider needs no account and no
# network (Terraform >= 1.7). Run from the module folder:
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
  vpc_id              = "vpc-0123456789abcdef0"
  public_subnet_ids   = ["subnet-0a", "subnet-0b"]
  private_subnet_ids  = ["subnet-1a", "subnet-1b"]
  allowed_cidr_blocks = ["203.0.113.0/24"]
}

run "defaults" {
  command = apply

  assert {
    condition     = aws_sqs_queue.dlq["checks"].name == "fraudlens-checks-dlq"
    error_message = "The checks DLQ must be named <queue>-dlq for the fraudlens SQS adapter."
  }

  assert {
    condition     = jsondecode(aws_sqs_queue.main["checks"].redrive_policy).maxReceiveCount == 6
    error_message = "The redrive backstop must sit one above max_attempts (5)."
  }

  assert {
    condition     = output.service_url == "http://fraudlens-alb-1.eu-west-1.elb.amazonaws.com"
    error_message = "service_url must be the ALB over HTTP when there is no certificate."
  }

  assert {
    condition     = aws_lb_target_group.service.health_check[0].path == "/ping" && aws_lb_target_group.service.port == 8080
    error_message = "The target group must check /ping on port 8080."
  }

  assert {
    condition     = jsondecode(aws_ecs_task_definition.this["service"].container_definitions)[0].command == ["serve"]
    error_message = "The service task must run `serve`."
  }

  assert {
    condition = (
      { for e in jsondecode(aws_ecs_task_definition.this["worker"].container_definitions)[0].environment : e.name => e.value }["FRAUDLENS_QUEUE_URL"]
      == "sqs://fraudlens-checks?region=eu-west-1&create=false"
    )
    error_message = "Workers must get the checks queue as FRAUDLENS_QUEUE_URL."
  }

  assert {
    condition     = startswith(output.database_url, "postgresql+psycopg://fraudlens@fraudlens-db.example.eu-west-1.rds.amazonaws.com:5432/fraudlens")
    error_message = "database_url must point at the RDS instance, without a password."
  }

  assert {
    condition     = length(aws_appautoscaling_target.worker) == 1 && length(aws_sagemaker_endpoint.this) == 0 && length(aws_cloudwatch_event_rule.processor) == 0
    error_message = "Defaults: worker autoscaling on, SageMaker and the processor schedule off."
  }

  assert {
    condition     = output.sagemaker_endpoint_name == null
    error_message = "No SageMaker endpoint by default."
  }
}

run "everything_enabled" {
  command = apply

  variables {
    enable_sagemaker               = true
    sagemaker_serverless_memory_mb = 2048
    enable_card_processor          = true
    certificate_arn                = "arn:aws:acm:eu-west-1:123456789012:certificate/abc"
    worker_max_count               = 1
    max_attempts                   = 3
  }

  assert {
    condition     = length(aws_sagemaker_endpoint.this) == 1 && aws_sagemaker_model.this[0].primary_container[0].image == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/fraudlens:latest"
    error_message = "SageMaker must serve the same image."
  }

  assert {
    condition     = aws_cloudwatch_event_rule.processor[0].schedule_expression == "rate(1 minute)"
    error_message = "The card processor runs every minute."
  }

  assert {
    condition     = length(aws_lb_listener.https) == 1 && aws_lb_listener.http.default_action[0].type == "redirect"
    error_message = "With a certificate, HTTPS serves and HTTP redirects."
  }

  assert {
    condition     = length(aws_appautoscaling_target.worker) == 0
    error_message = "worker_max_count == worker_count turns autoscaling off."
  }

  assert {
    condition     = jsondecode(aws_sqs_queue.main["card_events"].redrive_policy).maxReceiveCount == 4
    error_message = "The redrive backstop follows max_attempts."
  }
}

run "rejects_open_expiration_before_transition" {
  command = plan

  variables {
    sink_transition_days = 60
    sink_expiration_days = 30
  }

  expect_failures = [aws_s3_bucket_lifecycle_configuration.sink]
}
