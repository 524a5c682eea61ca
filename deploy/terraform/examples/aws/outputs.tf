output "service_url" {
  description = "Base URL of the scoring service."
  value       = module.fraudlens.service_url
}

output "ecr_repository_url" {
  description = "Where to push the image."
  value       = module.fraudlens.ecr_repository_url
}

output "models_uri" {
  description = "Where to upload the model registry."
  value       = module.fraudlens.models_uri
}

output "models_bucket" {
  description = "Bucket of the model registry."
  value       = module.fraudlens.models_bucket
}

output "sink_bucket" {
  description = "Bucket of scored card records."
  value       = module.fraudlens.sink_bucket
}

output "checks_queue_url" {
  description = "SQS URL of the checks queue."
  value       = module.fraudlens.checks_queue_url
}

output "checks_dlq_url" {
  description = "SQS URL of the checks dead-letter queue."
  value       = module.fraudlens.checks_dlq_url
}

output "card_events_queue_url" {
  description = "SQS URL of the card-events queue."
  value       = module.fraudlens.card_events_queue_url
}

output "ecs_cluster_name" {
  description = "ECS cluster name."
  value       = module.fraudlens.ecs_cluster_name
}

output "migrate_command" {
  description = "Runs the database migrations once."
  value       = module.fraudlens.migrate_command
}

output "sagemaker_endpoint_name" {
  description = "SageMaker endpoint, when enabled."
  value       = module.fraudlens.sagemaker_endpoint_name
}

output "service_name" {
  description = "ECS service of the scoring service."
  value       = module.fraudlens.service_name
}

output "worker_service_name" {
  description = "ECS service of the queue worker."
  value       = module.fraudlens.worker_service_name
}

output "kms_key_arn" {
  description = "KMS key of the deployment's data; producers sending to the queues need kms:GenerateDataKey and kms:Decrypt on it."
  value       = module.fraudlens.kms_key_arn
}

output "logs_bucket" {
  description = "Bucket of the load balancer and S3 access logs."
  value       = module.fraudlens.logs_bucket
}

output "alb_dns_name" {
  description = "Point service_domain_name at this name (CNAME or alias record)."
  value       = module.fraudlens.alb_dns_name
}

output "nat_public_ips" {
  description = "Source addresses of the tasks on the internet (empty with nat_gateway = none)."
  value       = module.network.nat_public_ips
}
