# Offline plan checks of the network module with a mocked AWS provider (Terraform >= 1.7):
#   terraform init -backend=false && terraform test

mock_provider "aws" {
  mock_data "aws_region" {
    defaults = { name = "eu-west-1" }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_resource "aws_vpc" {
    defaults = { id = "vpc-0123456789abcdef0", cidr_block = "10.40.0.0/16" }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = { arn = "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/vpc/fraudlens/flow-logs" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/fraudlens-flow" }
  }
}

variables {
  name               = "fraudlens"
  availability_zones = ["eu-west-1a", "eu-west-1b"]
  kms_key_arn        = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
}

run "endpoints_only" {
  command = apply

  assert {
    condition = (
      [for s in aws_subnet.public : s.cidr_block] == ["10.40.0.0/24", "10.40.1.0/24"]
      && [for s in aws_subnet.private : s.cidr_block] == ["10.40.128.0/20", "10.40.144.0/20"]
      && [for s in aws_subnet.private : s.availability_zone] == ["eu-west-1a", "eu-west-1b"]
      && alltrue([for s in concat(aws_subnet.public, aws_subnet.private) : s.map_public_ip_on_launch == false])
    )
    error_message = "One public /24 and one private /20 per zone; no subnet hands out public IPs."
  }

  assert {
    condition = (
      length(aws_nat_gateway.this) == 0
      && length(aws_route.private_nat) == 0
      && toset(keys(aws_vpc_endpoint.interface)) == toset(["ecr.api", "ecr.dkr", "sqs", "secretsmanager", "logs"])
      && alltrue([for e in aws_vpc_endpoint.interface : e.private_dns_enabled && e.vpc_endpoint_type == "Interface"])
      && aws_vpc_endpoint.interface["ecr.dkr"].service_name == "com.amazonaws.eu-west-1.ecr.dkr"
      && aws_vpc_endpoint.s3[0].vpc_endpoint_type == "Gateway"
      && length(aws_vpc_endpoint.s3[0].route_table_ids) == 2
    )
    error_message = "Default: no NAT gateway; interface endpoints for ECR, SQS, Secrets Manager and Logs, an S3 gateway on the private route tables."
  }

  assert {
    condition = (
      aws_vpc_security_group_ingress_rule.endpoints_https[0].from_port == 443
      && aws_vpc_security_group_ingress_rule.endpoints_https[0].cidr_ipv4 == "10.40.0.0/16"
    )
    error_message = "The endpoints accept HTTPS from inside the VPC only."
  }

  assert {
    condition = (
      aws_flow_log.this.traffic_type == "ALL"
      && aws_cloudwatch_log_group.flow.kms_key_id == var.kms_key_arn
      && aws_cloudwatch_log_group.flow.retention_in_days == 365
      && length(aws_default_security_group.this.ingress) == 0
      && length(aws_default_security_group.this.egress) == 0
    )
    error_message = "Flow logs to a KMS-encrypted group kept a year; the default security group allows nothing."
  }
}

run "nat_per_zone" {
  command = apply

  variables {
    availability_zones = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    nat_gateway        = "per_az"
    vpc_endpoints      = false
  }

  assert {
    condition = (
      length(aws_nat_gateway.this) == 3
      && [for r in aws_route.private_nat : r.nat_gateway_id] == [for n in aws_nat_gateway.this : n.id]
      && [for n in aws_nat_gateway.this : n.subnet_id] == [for s in aws_subnet.public : s.id]
      && length(aws_vpc_endpoint.interface) == 0
      && length(aws_vpc_endpoint.s3) == 0
    )
    error_message = "per_az: one NAT gateway in each zone's public subnet, each private route table through its own."
  }
}

run "nat_single" {
  command = apply

  variables {
    nat_gateway = "single"
  }

  assert {
    condition = (
      length(aws_nat_gateway.this) == 1
      && length(aws_route.private_nat) == 2
      && alltrue([for r in aws_route.private_nat : r.nat_gateway_id == aws_nat_gateway.this[0].id])
    )
    error_message = "single: every private route table through the one NAT gateway."
  }
}

run "refuses_no_way_out" {
  command = plan

  variables {
    vpc_endpoints = false
  }

  expect_failures = [aws_vpc.this]
}

run "refuses_one_zone" {
  command = plan

  variables {
    availability_zones = ["eu-west-1a"]
  }

  expect_failures = [var.availability_zones]
}
