output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "public_subnet_ids" {
  description = "Public subnets, one per zone (for the load balancer)."
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "Private subnets, one per zone (for the ECS tasks and the database)."
  value       = aws_subnet.private[*].id
}

output "private_route_table_ids" {
  description = "Route tables of the private subnets."
  value       = aws_route_table.private[*].id
}

output "nat_public_ips" {
  description = "Public addresses of the NAT gateways (the tasks' source address on the internet); empty without NAT."
  value       = aws_eip.nat[*].public_ip
}

output "vpc_endpoint_services" {
  description = "Services reachable through VPC endpoints from the private subnets."
  value       = concat(sort(keys(aws_vpc_endpoint.interface)), var.vpc_endpoints ? ["s3"] : [])
}
