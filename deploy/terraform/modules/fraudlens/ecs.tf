# ECS on Fargate. One image, four task definitions (the entrypoint maps the first word of
# the command, see deploy/docker/entrypoint.sh):
# - service:   `serve`, behind the load balancer;
# - worker:    `worker`, consumes the checks queue and writes risk events to the store;
# - processor: `process`, one pass over the card-events queue into the sink (scheduled);
# - migrate:   `db upgrade`, run on demand (see the migrate_command output).
#
# Every task runs in the private subnets without a public IP. It reaches ECR, S3, SQS,
# Secrets Manager and CloudWatch Logs through the VPC's NAT gateway or VPC endpoints
# (modules/network makes either).

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = var.container_insights ? "enabled" : "disabled"
  }

  tags = local.tags
}

locals {
  tasks = {
    service = {
      command = ["serve"]
      cpu     = var.service_cpu
      memory  = var.service_memory
      port    = 8080
      environment = {
        # Clients reach the service through the load balancer's HTTPS listener: session
        # cookies are marked Secure, and the client address the sign-in limits count is
        # read from X-Forwarded-For, which only the load balancer can set (the tasks take
        # traffic from its security group alone).
        FRAUDLENS_BEHIND_TLS_PROXY = "true"
        FORWARDED_ALLOW_IPS        = "*"
      }
    }
    worker = {
      command = [
        "worker",
        "--concurrency", tostring(var.worker_concurrency),
        "--max-attempts", tostring(var.max_attempts),
      ]
      cpu    = var.worker_cpu
      memory = var.worker_memory
      port   = null
      environment = {
        FRAUDLENS_DB_UPGRADE = var.db_upgrade_on_start ? "1" : "0"
      }
    }
    processor = {
      command     = ["process", "--source", "queue:${local.card_events_queue_url}", "--sink", local.sink_url]
      cpu         = var.processor_cpu
      memory      = var.processor_memory
      port        = null
      environment = {}
    }
    migrate = {
      command     = ["db", "upgrade"]
      cpu         = 256
      memory      = 512
      port        = null
      environment = {}
    }
  }
}

resource "aws_cloudwatch_log_group" "this" {
  for_each = local.tasks

  name              = "/ecs/${var.name}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = local.tags
}

resource "aws_ecs_task_definition" "this" {
  for_each = local.tasks

  family                   = "${var.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(each.value.cpu)
  memory                   = tostring(each.value.memory)
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  container_definitions = jsonencode([
    {
      name      = each.key
      image     = local.image
      essential = true
      command   = each.value.command

      portMappings = each.value.port == null ? [] : [
        { containerPort = each.value.port, protocol = "tcp" },
      ]

      environment = [
        for k, v in merge(local.common_environment, each.value.environment) : { name = k, value = v }
      ]

      secrets = [
        # RDS keeps {"username", "password"} in the secret; take the password key.
        { name = "PGPASSWORD", valueFrom = "${local.db_secret_arn}:password::" },
      ]

      # The image cannot be changed at run time: only the task's own scratch volumes
      # (the working folder and /tmp, see the image's VOLUME) are writable.
      readonlyRootFilesystem = true
      mountPoints = [
        { sourceVolume = "work", containerPath = "/var/lib/fraudlens", readOnly = false },
        { sourceVolume = "tmp", containerPath = "/tmp", readOnly = false },
      ]

      # tini as PID 1: signals reach fraudlens, which finishes its batch on SIGTERM.
      linuxParameters = { initProcessEnabled = true }
      stopTimeout     = 60

      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.this[each.key].name
          awslogs-region        = local.region
          awslogs-stream-prefix = each.key
        }
      }
    },
  ])

  # Task-scoped bind mounts on Fargate's ephemeral storage, gone with the task.
  volume {
    name = "work"
  }
  volume {
    name = "tmp"
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = local.image != null
      error_message = "Set image_tag (a tag pushed to the module's ECR repository) or image_uri."
    }
  }
}

resource "aws_ecs_service" "service" {
  name                              = "${var.name}-service"
  cluster                           = aws_ecs_cluster.this.id
  task_definition                   = aws_ecs_task_definition.this["service"].arn
  desired_count                     = var.service_desired_count
  launch_type                       = "FARGATE"
  platform_version                  = "LATEST"
  health_check_grace_period_seconds = 120
  propagate_tags                    = "SERVICE"

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.service.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.service.arn
    container_name   = "service"
    container_port   = 8080
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  tags = local.tags

  # The target group must be attached to a listener before a service can use it.
  depends_on = [aws_lb_listener.https]
}

resource "aws_ecs_service" "worker" {
  name             = "${var.name}-worker"
  cluster          = aws_ecs_cluster.this.id
  task_definition  = aws_ecs_task_definition.this["worker"].arn
  desired_count    = var.worker_count
  launch_type      = "FARGATE"
  platform_version = "LATEST"
  propagate_tags   = "SERVICE"

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.worker.id]
    assign_public_ip = false
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  tags = local.tags

  lifecycle {
    # Autoscaling owns the count once the service exists.
    ignore_changes = [desired_count]
  }
}
