# The card event processor on a schedule, like the reference's one-minute rule: EventBridge
# starts one Fargate task that drains the card-events queue into the sink and exits. A pass
# that outlasts the interval overlaps the next one safely: each message is leased by one
# task at a time.

resource "aws_cloudwatch_event_rule" "processor" {
  count = var.enable_card_processor ? 1 : 0

  name                = "${var.name}-card-processor"
  description         = "Run the fraudlens card event processor"
  schedule_expression = var.card_processor_schedule
  tags                = local.tags
}

resource "aws_cloudwatch_event_target" "processor" {
  count = var.enable_card_processor ? 1 : 0

  rule     = aws_cloudwatch_event_rule.processor[0].name
  arn      = aws_ecs_cluster.this.arn
  role_arn = aws_iam_role.events[0].arn

  ecs_target {
    task_definition_arn = aws_ecs_task_definition.this["processor"].arn
    task_count          = 1
    launch_type         = "FARGATE"
    platform_version    = "LATEST"

    network_configuration {
      subnets          = var.private_subnet_ids
      security_groups  = [aws_security_group.worker.id]
      assign_public_ip = false
    }
  }
}
