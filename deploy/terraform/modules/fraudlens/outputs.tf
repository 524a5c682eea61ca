output "service_url" {
  description = "Base URL of the scoring service (GET /ping, POST /invocations, /v1/..., /docs)."
  value       = local.service_url
}

output "alb_dns_name" {
  description = "DNS name of the load balancer (point service_domain_name here)."
  value       = aws_lb.this.dns_name
}

output "ecr_repository_url" {
  description = "Push the fraudlens image here (docker push <url>:<image_tag>)."
  value       = aws_ecr_repository.this.repository_url
}

output "image" {
  description = "Image reference the tasks and the SageMaker model run."
  value       = local.image
}

output "models_bucket" {
  description = "Bucket of the model registry."
  value       = aws_s3_bucket.this["models"].bucket
}

output "models_uri" {
  description = "Upload the registry folder here; tasks copy it at start (FRAUDLENS_MODELS_URI)."
  value       = local.models_uri
}

output "sink_bucket" {
  description = "Bucket of scored card records."
  value       = aws_s3_bucket.this["sink"].bucket
}

output "sink_url" {
  description = "FRAUDLENS_SINK of the tasks."
  value       = local.sink_url
}

output "checks_queue_url" {
  description = "SQS URL of the checks queue (send account checks here)."
  value       = aws_sqs_queue.main["checks"].url
}

output "checks_dlq_url" {
  description = "SQS URL of the checks dead-letter queue."
  value       = aws_sqs_queue.dlq["checks"].url
}

output "card_events_queue_url" {
  description = "SQS URL of the card-events queue drained by the card event processor."
  value       = aws_sqs_queue.main["card_events"].url
}

output "card_events_dlq_url" {
  description = "SQS URL of the card-events dead-letter queue."
  value       = aws_sqs_queue.dlq["card_events"].url
}

output "fraudlens_queue_url" {
  description = "FRAUDLENS_QUEUE_URL of the tasks (the checks queue in fraudlens's sqs:// form)."
  value       = local.checks_queue_url
}

output "ecs_cluster_name" {
  description = "ECS cluster name."
  value       = aws_ecs_cluster.this.name
}

output "service_name" {
  description = "ECS service of the scoring service."
  value       = aws_ecs_service.service.name
}

output "worker_service_name" {
  description = "ECS service of the queue worker."
  value       = aws_ecs_service.worker.name
}

output "task_definition_arns" {
  description = "Task definition ARN per role: service, worker, processor, migrate."
  value       = { for k, t in aws_ecs_task_definition.this : k => t.arn }
}

output "kms_key_arn" {
  description = "KMS key of this deployment's data at rest. Producers that send to the queues or read the buckets need kms:GenerateDataKey / kms:Decrypt on it."
  value       = aws_kms_key.this.arn
}

output "logs_bucket" {
  description = "Bucket of the load balancer's access logs (alb/) and the data buckets' server access logs (s3/)."
  value       = aws_s3_bucket.logs.bucket
}

output "waf_web_acl_arn" {
  description = "ARN of the WAF web ACL on the load balancer, or null when enable_waf is false."
  value       = one(aws_wafv2_web_acl.this[*].arn)
}

output "log_group_names" {
  description = "CloudWatch log group per role."
  value       = { for k, g in aws_cloudwatch_log_group.this : k => g.name }
}

output "database_address" {
  description = "Host name of the PostgreSQL instance (reachable from inside the VPC only)."
  value       = aws_db_instance.this.address
}

output "database_url" {
  description = "FRAUDLENS_DATABASE_URL of the tasks (no password: the tasks get PGPASSWORD from the secret)."
  value       = local.database_url
}

output "database_secret_arn" {
  description = "Secrets Manager secret holding the database user name and password."
  value       = local.db_secret_arn
}

output "sagemaker_endpoint_name" {
  description = "SageMaker endpoint name, or null when enable_sagemaker is false."
  value       = one(aws_sagemaker_endpoint.this[*].name)
}

output "migrate_command" {
  description = "AWS CLI command that runs the database migrations once as a Fargate task."
  value = join(" ", [
    "aws ecs run-task",
    "--region ${local.region}",
    "--cluster ${aws_ecs_cluster.this.name}",
    "--launch-type FARGATE",
    "--task-definition ${aws_ecs_task_definition.this["migrate"].family}",
    format(
      "--network-configuration 'awsvpcConfiguration={subnets=[%s],securityGroups=[%s],assignPublicIp=DISABLED}'",
      join(",", var.private_subnet_ids),
      aws_security_group.worker.id,
    ),
  ])
}
