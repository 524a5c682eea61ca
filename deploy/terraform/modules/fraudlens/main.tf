# fraudlens on AWS: the scoring service and the queue worker on ECS Fargate, the store on
# RDS PostgreSQL, the model registry and the scored-records sink on S3, the checks queue on
# SQS, and optionally a SageMaker endpoint and a scheduled card event processor.
#
# Files: kms.tf (the deployment's key), storage.tf (S3), logs.tf (the log bucket), queues.tf
# (SQS), ecr.tf, network.tf (security groups), alb.tf, waf.tf, database.tf (RDS), iam.tf,
# ecs.tf, autoscaling.tf, schedule.tf, sagemaker.tf.

data "aws_region" "current" {}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  region     = data.aws_region.current.name
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  tags = merge({ Application = "fraudlens", Deployment = var.name }, var.tags)

  # image_uri wins; otherwise image_tag in this module's repository (a precondition on the
  # task definitions asks for one of the two).
  image = (
    var.image_uri != null ? var.image_uri
    : var.image_tag != null ? "${aws_ecr_repository.this.repository_url}:${var.image_tag}"
    : null
  )

  # The SQS adapter finds a queue's dead-letter queue by the name "<queue>-dlq", so the
  # names here must keep that shape.
  queue_names = {
    checks      = "${var.name}-checks"
    card_events = "${var.name}-card-events"
  }

  # fraudlens queue URLs: create=false because the queues are Terraform's, and the tasks
  # are not allowed to create queues.
  checks_queue_url      = "sqs://${local.queue_names.checks}?region=${local.region}&create=false"
  card_events_queue_url = "sqs://${local.queue_names.card_events}?region=${local.region}&create=false"

  models_prefix = trim(var.models_prefix, "/")
  sink_prefix   = trim(var.sink_prefix, "/")
  models_uri    = "s3://${aws_s3_bucket.this["models"].bucket}/${local.models_prefix}/"
  sink_url      = "s3://${aws_s3_bucket.this["sink"].bucket}/${local.sink_prefix}"

  # Tasks copy the registry from S3 to local disk at start (deploy/docker/entrypoint.sh).
  models_dir = "/var/lib/fraudlens/models"

  # No password in the URL: libpq reads PGPASSWORD, which ECS injects from the secret that
  # RDS manages, so the password never appears in a task definition.
  database_url = format(
    "postgresql+psycopg://%s@%s:%d/%s?sslmode=require",
    var.db_username,
    aws_db_instance.this.address,
    aws_db_instance.this.port,
    var.db_name,
  )
  db_secret_arn = aws_db_instance.this.master_user_secret[0].secret_arn

  common_environment = merge(
    {
      FRAUDLENS_DATABASE_URL = local.database_url
      FRAUDLENS_QUEUE_URL    = local.checks_queue_url
      FRAUDLENS_SINK         = local.sink_url
      FRAUDLENS_MODELS_DIR   = local.models_dir
      FRAUDLENS_MODELS_URI   = local.models_uri
      FRAUDLENS_LOG_JSON     = "true"
    },
    var.extra_environment,
  )

  worker_autoscaling   = var.worker_max_count > var.worker_count
  sagemaker_serverless = var.sagemaker_serverless_memory_mb != null

  service_url = "https://${coalesce(var.service_domain_name, aws_lb.this.dns_name)}"
}
