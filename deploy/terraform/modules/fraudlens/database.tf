# The store: RDS PostgreSQL in the private subnets. RDS generates the master password and
# keeps it in Secrets Manager (manage_master_user_password); ECS injects it into the tasks
# as PGPASSWORD, so it is in no task definition and no Terraform output.

resource "aws_db_subnet_group" "this" {
  name_prefix = "${var.name}-"
  description = "fraudlens store"
  subnet_ids  = var.private_subnet_ids
  tags        = local.tags
}

resource "aws_db_instance" "this" {
  identifier_prefix = "${var.name}-"

  engine                     = "postgres"
  engine_version             = var.db_engine_version
  auto_minor_version_upgrade = true
  instance_class             = var.db_instance_class
  multi_az                   = var.db_multi_az

  allocated_storage     = var.db_allocated_storage
  max_allocated_storage = var.db_max_allocated_storage
  storage_type          = "gp3"
  storage_encrypted     = true

  db_name                     = var.db_name
  username                    = var.db_username
  manage_master_user_password = true

  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = [aws_security_group.db.id]
  publicly_accessible    = false

  backup_retention_period   = var.db_backup_retention_days
  copy_tags_to_snapshot     = true
  deletion_protection       = var.db_deletion_protection
  skip_final_snapshot       = var.db_skip_final_snapshot
  final_snapshot_identifier = var.db_skip_final_snapshot ? null : "${var.name}-final"

  tags = local.tags
}
