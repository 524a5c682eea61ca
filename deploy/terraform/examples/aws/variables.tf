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
  description = "ACM certificate for HTTPS on the load balancer; null serves HTTP only."
  type        = string
  default     = null
}

variable "image_tag" {
  description = "Tag of the image pushed to the ECR repository."
  type        = string
  default     = "latest"
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

variable "force_destroy" {
  description = "Let destroy remove non-empty buckets and the image repository."
  type        = bool
  default     = false
}
