variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "eu-west-1"
}

variable "owner" {
  description = "Value of the Owner tag on every resource."
  type        = string
  default     = "fraud-team"
}

variable "name" {
  description = "Prefix of every resource name."
  type        = string
  default     = "fraudlens"
}

variable "allowed_cidr_blocks" {
  description = "IPv4 ranges allowed to call the scoring service (the service has no authentication of its own)."
  type        = list(string)
}

variable "certificate_arn" {
  description = "ACM certificate (in this region) for HTTPS on the load balancer, covering service_domain_name."
  type        = string
}

variable "service_domain_name" {
  description = "DNS name you point at the load balancer (a CNAME or alias record), matching the certificate; null uses the load balancer's own name in service_url."
  type        = string
  default     = null
}

variable "image_tag" {
  description = "Tag of the image pushed to the ECR repository (tags are immutable: one per release)."
  type        = string
}

variable "vpc_cidr" {
  description = "IPv4 range of the VPC."
  type        = string
  default     = "10.40.0.0/16"
}

variable "availability_zones" {
  description = "Availability zones of the subnets; null takes zones a and b of the region."
  type        = list(string)
  default     = null
}

variable "nat_gateway" {
  description = "none (VPC endpoints only, no internet from the tasks), single or per_az."
  type        = string
  default     = "none"
}

variable "vpc_endpoints" {
  description = "VPC endpoints for ECR, S3, SQS, Secrets Manager and CloudWatch Logs."
  type        = bool
  default     = true
}

variable "enable_waf" {
  description = "AWS WAF web ACL with AWS managed rule groups on the load balancer."
  type        = bool
  default     = true
}

variable "worker_count" {
  description = "Queue worker tasks (the autoscaling minimum)."
  type        = number
  default     = 1
}

variable "worker_max_count" {
  description = "Most queue worker tasks under backlog."
  type        = number
  default     = 4
}

variable "enable_card_processor" {
  description = "Run the card event processor every minute."
  type        = bool
  default     = false
}

variable "enable_sagemaker" {
  description = "Also deploy a SageMaker endpoint (upload the model tarball first)."
  type        = bool
  default     = false
}

variable "db_instance_class" {
  description = "RDS instance class of the store."
  type        = string
  default     = "db.t4g.micro"
}

variable "db_multi_az" {
  description = "Standby database in a second zone with automatic failover (doubles the instance cost)."
  type        = bool
  default     = true
}

variable "db_deletion_protection" {
  description = "Protect the database from deletion (set false, apply, then destroy)."
  type        = bool
  default     = true
}

variable "db_skip_final_snapshot" {
  description = "Destroy the database without a final snapshot."
  type        = bool
  default     = false
}

variable "alb_deletion_protection" {
  description = "Protect the load balancer from deletion (set false, apply, then destroy)."
  type        = bool
  default     = true
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps container, database and WAF logs."
  type        = number
  default     = 365
}

variable "force_destroy" {
  description = "Let destroy remove non-empty buckets and the image repository."
  type        = bool
  default     = false
}
