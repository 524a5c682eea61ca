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
  description = "Subnets of the ECS tasks and the database (at least two zones). They need a route to ECR, S3, SQS and Secrets Manager: a NAT gateway, VPC endpoints, or public subnets with assign_public_ip = true."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "The database subnet group needs subnets in at least two availability zones."
  }
}

variable "assign_public_ip" {
  description = "Give ECS tasks a public IP (needed when their subnets have no NAT gateway nor VPC endpoints)."
  type        = bool
  default     = false
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
  description = "ACM certificate for an HTTPS listener on 443; when set, port 80 redirects to HTTPS. Null: HTTP on port 80 only."
  type        = string
  default     = null
}

variable "service_domain_name" {
  description = "DNS name that points at the load balancer (for the service_url output); null uses the ALB's own name."
  type        = string
  default     = null
}

# -- image ----------------------------------------------------------------------------------

variable "image_tag" {
  description = "Tag of the fraudlens image in the module's ECR repository."
  type        = string
  default     = "latest"
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
  description = "MUTABLE lets a tag such as latest be pushed again; IMMUTABLE forbids it."
  type        = string
  default     = "MUTABLE"

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
  description = "More environment variables for every fraudlens container (e.g. FRAUDLENS_MARKET_THRESHOLD)."
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
  description = "Keep a standby replica in a second zone (doubles the instance cost)."
  type        = bool
  default     = false
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
  description = "Days CloudWatch keeps the containers' logs."
  type        = number
  default     = 30
}

variable "container_insights" {
  description = "Turn on CloudWatch Container Insights for the ECS cluster (billed as custom metrics)."
  type        = bool
  default     = false
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
