variable "name" {
  description = "Prefix of every resource name (lowercase letters, digits and hyphens)."
  type        = string

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

variable "cidr_block" {
  description = "IPv4 range of the VPC (a /16 leaves room for the /24 public and /20 private subnets)."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.cidr_block, 0)) && tonumber(split("/", var.cidr_block)[1]) <= 16
    error_message = "cidr_block must be an IPv4 CIDR block of /16 or larger."
  }
}

variable "availability_zones" {
  description = "Availability zones of the subnets, by name (two or more: the load balancer and the database need two). Named, not looked up, so the network never changes when AWS opens a zone."
  type        = list(string)

  validation {
    condition     = length(var.availability_zones) >= 2 && length(var.availability_zones) <= 6 && length(distinct(var.availability_zones)) == length(var.availability_zones)
    error_message = "availability_zones: 2 to 6 distinct zone names, e.g. [\"eu-west-1a\", \"eu-west-1b\"]."
  }
}

variable "nat_gateway" {
  description = "NAT gateways for outbound internet access from the private subnets: none (tasks reach AWS through the VPC endpoints only), single (one, in the first zone) or per_az (one per zone, no cross-zone dependency)."
  type        = string
  default     = "none"

  validation {
    condition     = contains(["none", "single", "per_az"], var.nat_gateway)
    error_message = "nat_gateway must be none, single or per_az."
  }
}

variable "vpc_endpoints" {
  description = "Create VPC endpoints for what the tasks call: ECR (api, dkr), S3 (gateway), SQS, Secrets Manager and CloudWatch Logs. With nat_gateway = none they are the tasks' only way out."
  type        = bool
  default     = true
}

variable "kms_key_arn" {
  description = "KMS key that encrypts the flow-log log group (its key policy must let CloudWatch Logs use it, as the fraudlens module's key does)."
  type        = string
}

variable "flow_log_retention_days" {
  description = "Days CloudWatch keeps the VPC flow logs."
  type        = number
  default     = 365
}

variable "flow_log_traffic_type" {
  description = "Which flows to log: ALL, ACCEPT or REJECT."
  type        = string
  default     = "ALL"

  validation {
    condition     = contains(["ALL", "ACCEPT", "REJECT"], var.flow_log_traffic_type)
    error_message = "flow_log_traffic_type must be ALL, ACCEPT or REJECT."
  }
}
