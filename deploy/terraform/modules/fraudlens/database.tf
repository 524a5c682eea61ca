# The store: RDS PostgreSQL in the private subnets. RDS generates the master password and
# keeps it in Secrets Manager (manage_master_user_password), encrypted with the
# deployment's KMS key; ECS injects it into the tasks as PGPASSWORD, so it is in no task
# definition and no Terraform output.
#
# Storage, Performance Insights and the secret use the KMS key. IAM database
# authentication is on, so people can connect with short-lived tokens instead of the
# master password. Enhanced monitoring sends OS metrics every db_monitoring_interval
# seconds. The parameter group refuses unencrypted connections and logs DDL statements
# and every statement slower than db_log_min_duration_ms; RDS exports those logs to a
# CloudWatch log group created here (KMS, log_retention_days) rather than by RDS (which
# would keep them forever, unencrypted).

locals {
  db_identifier = "${var.name}-db"
  # "16" or "16.4" -> "postgres16"
  db_parameter_family = "postgres${split(".", var.db_engine_version)[0]}"
  db_log_exports      = ["postgresql", "upgrade"]
}

resource "aws_db_subnet_group" "this" {
  name_prefix = "${var.name}-"
  description = "fraudlens store"
  subnet_ids  = var.private_subnet_ids
  tags        = local.tags
}

resource "aws_db_parameter_group" "this" {
  name_prefix = "${var.name}-"
  family      = local.db_parameter_family
  description = "fraudlens store: TLS only, DDL and slow-statement logging"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  # "ddl", not "all": statements carry account ids and amounts, which stay out of the logs
  # unless a statement is slow.
  parameter {
    name  = "log_statement"
    value = var.db_log_statement
  }

  parameter {
    name  = "log_min_duration_statement"
    value = tostring(var.db_log_min_duration_ms)
  }

  parameter {
    name  = "log_connections"
    value = "1"
  }

  parameter {
    name  = "log_disconnections"
    value = "1"
  }

  tags = local.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_cloudwatch_log_group" "db" {
  for_each = toset(local.db_log_exports)

  name              = "/aws/rds/instance/${local.db_identifier}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = local.tags
}

resource "aws_db_instance" "this" {
  identifier = local.db_identifier

  engine                     = "postgres"
  engine_version             = var.db_engine_version
  auto_minor_version_upgrade = true
  instance_class             = var.db_instance_class
  multi_az                   = var.db_multi_az
  parameter_group_name       = aws_db_parameter_group.this.name

  allocated_storage     = var.db_allocated_storage
  max_allocated_storage = var.db_max_allocated_storage
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.this.arn

  db_name                             = var.db_name
  username                            = var.db_username
  manage_master_user_password         = true
  master_user_secret_kms_key_id       = aws_kms_key.this.arn
  iam_database_authentication_enabled = true

  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = [aws_security_group.db.id]
  publicly_accessible    = false

  backup_retention_period   = var.db_backup_retention_days
  copy_tags_to_snapshot     = true
  deletion_protection       = var.db_deletion_protection
  skip_final_snapshot       = var.db_skip_final_snapshot
  final_snapshot_identifier = var.db_skip_final_snapshot ? null : "${var.name}-final"

  monitoring_interval = var.db_monitoring_interval
  monitoring_role_arn = var.db_monitoring_interval > 0 ? aws_iam_role.rds_monitoring.arn : null

  performance_insights_enabled          = true
  performance_insights_kms_key_id       = aws_kms_key.this.arn
  performance_insights_retention_period = var.db_performance_insights_retention_days

  enabled_cloudwatch_logs_exports = local.db_log_exports

  tags = local.tags

  # The log groups first, so that RDS writes into them instead of creating its own.
  depends_on = [aws_cloudwatch_log_group.db, aws_iam_role_policy_attachment.rds_monitoring]
}
