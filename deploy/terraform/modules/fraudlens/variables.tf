# -- naming and network -----------------------------------------------------------------

variable "name" {
  description = "Prefix of every resource name (lowercase letters, digits and hyphens)."
  type        = string
  default     = "fraudlens"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name))
    error_message = "name: 3-20 characters, lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "tags" {
  description = "Tags added to every resource that takes tags."
  type        = map(string)
  default     = {}
}

variable "vpc_id" {
  description = "VPC that holds the load balancer, the ECS tasks and the database."
  type        = string
}

variable "public_subnet_ids" {
  description = "Subnets of the load balancer (public ones for an internet-facing ALB; at least two zones)."
  type        = list(string)

  validation {
    condition     = length(var.public_subnet_ids) >= 2
    error_message = "An application load balancer needs subnets in at least two availability zones."
  }
}

variable "private_subnet_ids" {
  description = "Private subnets of the ECS tasks and the database (at least two zones). Tasks get no public IP: the subnets need a NAT gateway or VPC endpoints for ECR (api, dkr), S3, SQS, Secrets Manager and CloudWatch Logs (modules/network makes either)."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "The database subnet group needs subnets in at least two availability zones."
  }
}

variable "allowed_cidr_blocks" {
  description = "IPv4 ranges allowed to reach the load balancer. The service has no authentication of its own: keep this narrow."
  type        = list(string)

  validation {
    condition     = length(var.allowed_cidr_blocks) > 0 && alltrue([for c in var.allowed_cidr_blocks : can(cidrhost(c, 0))])
    error_message = "allowed_cidr_blocks: one or more IPv4 CIDR blocks, e.g. [\"203.0.113.0/24\"]."
  }
}

variable "internal_alb" {
  description = "Make the load balancer internal (reachable from inside the VPC only)."
  type        = bool
  default     = false
}

variable "certificate_arn" {
  description = "ARN of the ACM certificate (same region) the load balancer serves HTTPS with on 443; port 80 only redirects to HTTPS."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/.+$", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN (arn:aws:acm:<region>:<account>:certificate/<id>)."
  }
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener. The default allows TLS 1.3 and TLS 1.2 with forward-secret AEAD ciphers only."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-Res-2021-06"

  validation {
    condition     = startswith(var.ssl_policy, "ELBSecurityPolicy-TLS13-")
    error_message = "ssl_policy must be one of the ELBSecurityPolicy-TLS13-* policies (TLS 1.2 at least)."
  }
}

variable "alb_deletion_protection" {
  description = "Refuse to delete the load balancer; set false before terraform destroy."
  type        = bool
  default     = true
}

variable "enable_waf" {
  description = "Attach an AWS WAF web ACL with AWS managed rule groups (IP reputation, known bad inputs, anonymous IPs, common rule set) to the load balancer."
  type        = bool
  default     = true
}

variable "waf_rate_limit" {
  description = "Requests per 5 minutes from one IP address above which WAF blocks it; null adds no rate rule."
  type        = number
  default     = null

  validation {
    condition     = var.waf_rate_limit == null || try(var.waf_rate_limit >= 10, false)
    error_message = "waf_rate_limit must be at least 10 (a WAF limit), or null."
  }
}

variable "service_domain_name" {
  description = "DNS name that points at the load balancer (for the service_url output); null uses the ALB's own name."
  type        = string
  default     = null
}

# -- image ----------------------------------------------------------------------------------

variable "image_tag" {
  description = "Tag of the fraudlens image in the module's ECR repository (tags are immutable: push each release under a new one). Required unless image_uri is set."
  type        = string
  default     = null
}

variable "image_uri" {
  description = "Full image reference to run instead of <ECR repository>:<image_tag> (it must still be pullable by ECS and, when enabled, SageMaker)."
  type        = string
  default     = null
}

variable "cpu_architecture" {
  description = "CPU architecture of the image and the Fargate tasks: X86_64 or ARM64."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "ecr_image_tag_mutability" {
  description = "IMMUTABLE (default) refuses to push a tag twice, so a tag always names the image that was scanned and deployed; MUTABLE allows it."
  type        = string
  default     = "IMMUTABLE"

  validation {
    condition     = contains(["MUTABLE", "IMMUTABLE"], var.ecr_image_tag_mutability)
    error_message = "ecr_image_tag_mutability must be MUTABLE or IMMUTABLE."
  }
}

variable "ecr_keep_images" {
  description = "Tagged images kept in the ECR repository; older ones expire (untagged ones after a day)."
  type        = number
  default     = 20
}

variable "extra_environment" {
  description = "More environment variables for every fraudlens container (e.g. FRAUDLENS_EVENT_THRESHOLD)."
  type        = map(string)
  default     = {}
}

# -- storage --------------------------------------------------------------------------------

variable "models_prefix" {
  description = "Key prefix of the model registry in the models bucket; ECS tasks copy it to local disk when they start."
  type        = string
  default     = "models"
}

variable "sink_prefix" {
  description = "Key prefix of scored card records in the sink bucket (FRAUDLENS_SINK = s3://<sink bucket>/<prefix>)."
  type        = string
  default     = "cards"
}

variable "sink_transition_days" {
  description = "Days after which scored records move to S3 Standard-IA (30 at least, an S3 rule)."
  type        = number
  default     = 30

  validation {
    condition     = var.sink_transition_days >= 30
    error_message = "S3 moves objects to STANDARD_IA after 30 days at the earliest."
  }
}

variable "sink_expiration_days" {
  description = "Days after which scored records are deleted; null keeps them."
  type        = number
  default     = 365
}

variable "noncurrent_version_expiration_days" {
  description = "Days a replaced or deleted object version is kept in either bucket."
  type        = number
  default     = 30
}

variable "force_destroy" {
  description = "Let terraform destroy delete non-empty buckets and the ECR repository with its images."
  type        = bool
  default     = false
}

# -- queues ---------------------------------------------------------------------------------

variable "max_attempts" {
  description = "Deliveries of a check before the worker dead-letters it with the reason (fraudlens worker --max-attempts); the SQS redrive policy is set one above as a backstop."
  type        = number
  default     = 5

  validation {
    condition     = var.max_attempts >= 1 && var.max_attempts < 1000
    error_message = "max_attempts must be between 1 and 999 (SQS allows maxReceiveCount up to 1000)."
  }
}

variable "queue_visibility_timeout_seconds" {
  description = "Default visibility timeout of the queues (the adapter sets its own lease on each receive)."
  type        = number
  default     = 60
}

variable "queue_retention_seconds" {
  description = "How long an unprocessed message stays in a queue."
  type        = number
  default     = 345600
}

variable "dlq_retention_seconds" {
  description = "How long a dead-lettered message is kept (SQS maximum: 14 days)."
  type        = number
  default     = 1209600
}

# -- scoring service ------------------------------------------------------------------------

variable "service_cpu" {
  description = "Fargate CPU units of a scoring service task (1024 = 1 vCPU)."
  type        = number
  default     = 512
}

variable "service_memory" {
  description = "Fargate memory (MiB) of a scoring service task; must suit service_cpu."
  type        = number
  default     = 1024
}

variable "service_desired_count" {
  description = "Scoring service tasks behind the load balancer."
  type        = number
  default     = 1
}

# -- worker ---------------------------------------------------------------------------------

variable "worker_cpu" {
  description = "Fargate CPU units of a queue worker task."
  type        = number
  default     = 512
}

variable "worker_memory" {
  description = "Fargate memory (MiB) of a queue worker task."
  type        = number
  default     = 1024
}

variable "worker_count" {
  description = "Queue worker tasks at creation, and the autoscaling minimum. Terraform ignores later drift of the running count (autoscaling owns it)."
  type        = number
  default     = 1
}

variable "worker_max_count" {
  description = "Autoscaling maximum of worker tasks, scaled on the checks queue backlog; equal to worker_count turns autoscaling off."
  type        = number
  default     = 4

  validation {
    condition     = var.worker_max_count >= 0
    error_message = "worker_max_count cannot be negative."
  }
}

variable "worker_scale_up_messages" {
  description = "Visible messages in the checks queue above which one more worker starts."
  type        = number
  default     = 100
}

variable "worker_concurrency" {
  description = "Worker processes in one worker task (fraudlens worker --concurrency)."
  type        = number
  default     = 1
}

variable "db_upgrade_on_start" {
  description = "Run `fraudlens db upgrade` (Alembic migrations) when a worker task starts. The migrate task definition does the same on demand."
  type        = bool
  default     = true
}

# -- card event processor -------------------------------------------------------------------

variable "enable_card_processor" {
  description = "Run the card event processor on a schedule (EventBridge rule -> Fargate task), draining the card-events queue into the sink."
  type        = bool
  default     = false
}

variable "card_processor_schedule" {
  description = "EventBridge schedule of the card event processor (the reference ran every minute)."
  type        = string
  default     = "rate(1 minute)"
}

variable "processor_cpu" {
  description = "Fargate CPU units of a card event processor task."
  type        = number
  default     = 512
}

variable "processor_memory" {
  description = "Fargate memory (MiB) of a card event processor task."
  type        = number
  default     = 1024
}

# -- database -------------------------------------------------------------------------------

variable "db_instance_class" {
  description = "RDS instance class of the PostgreSQL store."
  type        = string
  default     = "db.t4g.micro"
}

variable "db_engine_version" {
  description = "PostgreSQL version (major, or major.minor)."
  type        = string
  default     = "16"
}

variable "db_allocated_storage" {
  description = "Initial database storage in GiB."
  type        = number
  default     = 20
}

variable "db_max_allocated_storage" {
  description = "Storage autoscaling ceiling in GiB (0 turns storage autoscaling off)."
  type        = number
  default     = 100
}

variable "db_name" {
  description = "Database created on the instance."
  type        = string
  default     = "fraudlens"
}

variable "db_username" {
  description = "Master user; its password is generated and kept in Secrets Manager by RDS."
  type        = string
  default     = "fraudlens"
}

variable "db_multi_az" {
  description = "Keep a standby replica in a second zone, with automatic failover (doubles the instance cost)."
  type        = bool
  default     = true
}

variable "db_monitoring_interval" {
  description = "Seconds between RDS enhanced monitoring samples (1, 5, 10, 15, 30 or 60; 0 turns it off)."
  type        = number
  default     = 60

  validation {
    condition     = contains([0, 1, 5, 10, 15, 30, 60], var.db_monitoring_interval)
    error_message = "db_monitoring_interval must be one of 0, 1, 5, 10, 15, 30, 60."
  }
}

variable "db_performance_insights_retention_days" {
  description = "Days of Performance Insights data (7 is the free tier; longer: a multiple of 31, up to 731)."
  type        = number
  default     = 7
}

variable "db_log_statement" {
  description = "PostgreSQL log_statement: none, ddl (default: schema changes), mod (also writes) or all. Statements hold account data, so more than ddl puts it in the logs."
  type        = string
  default     = "ddl"

  validation {
    condition     = contains(["none", "ddl", "mod", "all"], var.db_log_statement)
    error_message = "db_log_statement must be none, ddl, mod or all."
  }
}

variable "db_log_min_duration_ms" {
  description = "PostgreSQL log_min_duration_statement: log every statement slower than this many milliseconds (-1 turns it off)."
  type        = number
  default     = 1000
}

variable "db_backup_retention_days" {
  description = "Days of automated backups (0 turns them off)."
  type        = number
  default     = 7
}

variable "db_deletion_protection" {
  description = "Refuse to delete the database; set false before terraform destroy."
  type        = bool
  default     = true
}

variable "db_skip_final_snapshot" {
  description = "Delete the database without a final snapshot."
  type        = bool
  default     = false
}

# -- logs and metrics -----------------------------------------------------------------------

variable "log_retention_days" {
  description = "Days CloudWatch keeps the logs of the containers, the database and WAF (a CloudWatch retention value, e.g. 365, 731, 3653)."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch Logs retention value (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653)."
  }
}

variable "access_log_retention_days" {
  description = "Days the log bucket keeps load balancer and S3 access logs."
  type        = number
  default     = 365
}

variable "container_insights" {
  description = "Turn on CloudWatch Container Insights for the ECS cluster (billed as custom metrics)."
  type        = bool
  default     = true
}

variable "kms_deletion_window_days" {
  description = "Days KMS waits before deleting the deployment's key after it is scheduled for deletion (7-30). Data encrypted with a deleted key is lost."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be between 7 and 30."
  }
}

# -- SageMaker (optional) -------------------------------------------------------------------

variable "enable_sagemaker" {
  description = "Also serve the image from a SageMaker real-time endpoint (the image answers SageMaker's `serve` contract)."
  type        = bool
  default     = false
}

variable "sagemaker_model_data_key" {
  description = "Key in the models bucket of a tar.gz of the model registry; SageMaker unpacks it into /opt/ml/model."
  type        = string
  default     = "sagemaker/model.tar.gz"
}

variable "sagemaker_instance_type" {
  description = "Instance type of the SageMaker endpoint (ignored when serverless)."
  type        = string
  default     = "ml.m5.large"
}

variable "sagemaker_instance_count" {
  description = "Instances behind the SageMaker endpoint (ignored when serverless)."
  type        = number
  default     = 1
}

variable "sagemaker_serverless_memory_mb" {
  description = "Memory of a serverless SageMaker endpoint (1024-6144 in steps of 1024); null deploys on instances."
  type        = number
  default     = null
}

variable "sagemaker_serverless_max_concurrency" {
  description = "Concurrent invocations of a serverless SageMaker endpoint."
  type        = number
  default     = 5
}
