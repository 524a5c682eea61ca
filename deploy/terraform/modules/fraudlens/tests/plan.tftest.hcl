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
}

variables {
  vpc_id              = "vpc-0123456789abcdef0"
  public_subnet_ids   = ["subnet-0a", "subnet-0b"]
  private_subnet_ids  = ["subnet-1a", "subnet-1b"]
  allowed_cidr_blocks = ["203.0.113.0/24"]
  certificate_arn     = "arn:aws:acm:eu-west-1:123456789012:certificate/abc"
  image_tag           = "v1"
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
    condition     = output.service_url == "https://fraudlens-alb-1.eu-west-1.elb.amazonaws.com"
    error_message = "service_url must be the ALB over HTTPS."
  }

  assert {
    condition = (
      aws_lb_listener.https.protocol == "HTTPS"
      && aws_lb_listener.https.certificate_arn == "arn:aws:acm:eu-west-1:123456789012:certificate/abc"
      && startswith(aws_lb_listener.https.ssl_policy, "ELBSecurityPolicy-TLS13-1-2-")
      && aws_lb_listener.http.default_action[0].type == "redirect"
      && aws_lb_listener.http.default_action[0].redirect[0].protocol == "HTTPS"
    )
    error_message = "HTTPS with the certificate and a TLS 1.2+ policy; port 80 only redirects."
  }

  assert {
    condition = (
      aws_lb.this.enable_deletion_protection
      && aws_lb.this.access_logs[0].enabled
      && aws_lb.this.access_logs[0].bucket == aws_s3_bucket.logs.id
      && length(aws_wafv2_web_acl_association.this) == 1
      && toset([for r in aws_wafv2_web_acl.this[0].rule : r.name]) == toset([
        "AWSManagedRulesAmazonIpReputationList",
        "AWSManagedRulesKnownBadInputsRuleSet",
        "AWSManagedRulesAnonymousIpList",
        "AWSManagedRulesCommonRuleSet",
      ])
      && length(aws_wafv2_web_acl_logging_configuration.this) == 1
    )
    error_message = "The ALB: deletion protection, access logs to the log bucket, a WAF web ACL with the managed rule groups, logged."
  }

  assert {
    condition = (
      aws_ecs_service.service.network_configuration[0].assign_public_ip == false
      && aws_ecs_service.worker.network_configuration[0].assign_public_ip == false
      && strcontains(output.migrate_command, "assignPublicIp=DISABLED")
    )
    error_message = "Tasks get no public IP."
  }

  assert {
    condition = (
      aws_kms_key.this.enable_key_rotation
      && alltrue([for k, c in aws_s3_bucket_server_side_encryption_configuration.this : one(c.rule).apply_server_side_encryption_by_default[0].kms_master_key_id == aws_kms_key.this.arn])
      && aws_ecr_repository.this.encryption_configuration[0].kms_key == aws_kms_key.this.arn
      && alltrue([for k, g in aws_cloudwatch_log_group.this : g.kms_key_id == aws_kms_key.this.arn && g.retention_in_days == 365])
      && alltrue([for k, q in aws_sqs_queue.main : q.kms_master_key_id == aws_kms_key.this.arn])
      && alltrue([for k, q in aws_sqs_queue.dlq : q.kms_master_key_id == aws_kms_key.this.arn])
      && aws_db_instance.this.kms_key_id == aws_kms_key.this.arn
      && aws_db_instance.this.performance_insights_kms_key_id == aws_kms_key.this.arn
      && aws_db_instance.this.master_user_secret_kms_key_id == aws_kms_key.this.arn
    )
    error_message = "One rotated KMS key for buckets, ECR, log groups (kept 365 days), queues, RDS, Performance Insights and the secret."
  }

  assert {
    condition = (
      aws_ecr_repository.this.image_tag_mutability == "IMMUTABLE"
      && aws_ecr_repository.this.image_scanning_configuration[0].scan_on_push
    )
    error_message = "ECR: immutable tags, scan on push."
  }

  assert {
    condition = (
      aws_db_instance.this.multi_az
      && aws_db_instance.this.iam_database_authentication_enabled
      && aws_db_instance.this.monitoring_interval == 60
      && aws_db_instance.this.monitoring_role_arn == aws_iam_role.rds_monitoring.arn
      && aws_db_instance.this.performance_insights_enabled
      && toset(aws_db_instance.this.enabled_cloudwatch_logs_exports) == toset(["postgresql", "upgrade"])
      && aws_db_instance.this.parameter_group_name == aws_db_parameter_group.this.name
      && aws_db_parameter_group.this.family == "postgres16"
      && { for p in aws_db_parameter_group.this.parameter : p.name => p.value } == {
        "rds.force_ssl"            = "1"
        log_statement              = "ddl"
        log_min_duration_statement = "1000"
        log_connections            = "1"
        log_disconnections         = "1"
      }
      && aws_cloudwatch_log_group.db["postgresql"].name == "/aws/rds/instance/fraudlens-db/postgresql"
    )
    error_message = "RDS: Multi-AZ, IAM auth, enhanced monitoring, Performance Insights, TLS only, DDL and slow-statement logs exported to a log group of ours."
  }

  assert {
    condition = (
      aws_s3_bucket_public_access_block.logs.block_public_acls
      && aws_s3_bucket_public_access_block.logs.restrict_public_buckets
      && aws_s3_bucket_versioning.logs.versioning_configuration[0].status == "Enabled"
      && alltrue([for k, l in aws_s3_bucket_logging.this : l.target_bucket == aws_s3_bucket.logs.id && l.target_prefix == "s3/${k}/"])
      && length(aws_s3_bucket_logging.this) == 2
    )
    error_message = "The log bucket is private and versioned, and both data buckets log their access to it."
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
    condition = alltrue([
      for k, td in aws_ecs_task_definition.this :
      jsondecode(td.container_definitions)[0].readonlyRootFilesystem == true
      && toset([for m in jsondecode(td.container_definitions)[0].mountPoints : m.containerPath]) == toset(["/var/lib/fraudlens", "/tmp"])
      && toset([for v in td.volume : v.name]) == toset(["work", "tmp"])
    ])
    error_message = "Every task runs on a read-only root file system with only its scratch volumes writable."
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
    worker_max_count               = 1
    max_attempts                   = 3
  }

  assert {
    condition     = length(aws_sagemaker_endpoint.this) == 1 && aws_sagemaker_model.this[0].primary_container[0].image == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/fraudlens:v1"
    error_message = "SageMaker must serve the same image."
  }

  assert {
    condition = (
      aws_sagemaker_model.this[0].enable_network_isolation
      && aws_sagemaker_endpoint_configuration.this[0].kms_key_arn == null
      && aws_cloudwatch_event_target.processor[0].ecs_target[0].network_configuration[0].assign_public_ip == false
    )
    error_message = "SageMaker: network isolation, no KMS key on a serverless endpoint; the scheduled processor gets no public IP."
  }

  assert {
    condition     = aws_cloudwatch_event_rule.processor[0].schedule_expression == "rate(1 minute)"
    error_message = "The card processor runs every minute."
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

run "options_off" {
  command = apply

  variables {
    enable_waf              = false
    db_multi_az             = false
    db_monitoring_interval  = 0
    enable_sagemaker        = true
    alb_deletion_protection = false
    image_uri               = "registry.example.com/fraudlens@sha256:0123"
    image_tag               = null
  }

  assert {
    condition = (
      length(aws_wafv2_web_acl.this) == 0
      && length(aws_wafv2_web_acl_association.this) == 0
      && length(aws_cloudwatch_log_group.waf) == 0
      && output.waf_web_acl_arn == null
    )
    error_message = "enable_waf = false makes no web ACL."
  }

  assert {
    condition = (
      aws_db_instance.this.multi_az == false
      && aws_db_instance.this.monitoring_interval == 0
      && aws_lb.this.enable_deletion_protection == false
    )
    error_message = "The switches reach the database and the load balancer."
  }

  assert {
    condition = (
      jsondecode(aws_ecs_task_definition.this["worker"].container_definitions)[0].image == "registry.example.com/fraudlens@sha256:0123"
      && aws_sagemaker_endpoint_configuration.this[0].kms_key_arn == aws_kms_key.this.arn
    )
    error_message = "image_uri replaces the repository image; an instance endpoint encrypts its volumes with the key."
  }
}

run "needs_an_image" {
  command = plan

  variables {
    image_tag = null
  }

  expect_failures = [aws_ecs_task_definition.this]
}

run "rejects_a_certificate_that_is_not_an_acm_arn" {
  command = plan

  variables {
    certificate_arn = "arn:aws:iam::123456789012:server-certificate/fraudlens"
  }

  expect_failures = [var.certificate_arn]
}

run "rejects_a_tls_policy_below_1_2" {
  command = plan

  variables {
    ssl_policy = "ELBSecurityPolicy-2016-08"
  }

  expect_failures = [var.ssl_policy]
}
