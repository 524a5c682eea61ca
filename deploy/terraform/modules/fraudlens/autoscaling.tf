# Worker autoscaling on the checks queue backlog (SQS ApproximateNumberOfMessagesVisible):
# one more task while the backlog is above worker_scale_up_messages (two more above four
# times that), one fewer after ten minutes with an empty queue. Between worker_count and
# worker_max_count tasks; off when the two are equal.

resource "aws_appautoscaling_target" "worker" {
  count = local.worker_autoscaling ? 1 : 0

  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.worker.name}"
  min_capacity       = var.worker_count
  max_capacity       = var.worker_max_count
}

resource "aws_appautoscaling_policy" "worker_out" {
  count = local.worker_autoscaling ? 1 : 0

  name               = "${var.name}-worker-backlog-out"
  policy_type        = "StepScaling"
  service_namespace  = aws_appautoscaling_target.worker[0].service_namespace
  scalable_dimension = aws_appautoscaling_target.worker[0].scalable_dimension
  resource_id        = aws_appautoscaling_target.worker[0].resource_id

  step_scaling_policy_configuration {
    adjustment_type         = "ChangeInCapacity"
    cooldown                = 60
    metric_aggregation_type = "Maximum"

    # Bounds are relative to the alarm threshold.
    step_adjustment {
      metric_interval_lower_bound = 0
      metric_interval_upper_bound = 3 * var.worker_scale_up_messages
      scaling_adjustment          = 1
    }
    step_adjustment {
      metric_interval_lower_bound = 3 * var.worker_scale_up_messages
      scaling_adjustment          = 2
    }
  }
}

resource "aws_appautoscaling_policy" "worker_in" {
  count = local.worker_autoscaling ? 1 : 0

  name               = "${var.name}-worker-backlog-in"
  policy_type        = "StepScaling"
  service_namespace  = aws_appautoscaling_target.worker[0].service_namespace
  scalable_dimension = aws_appautoscaling_target.worker[0].scalable_dimension
  resource_id        = aws_appautoscaling_target.worker[0].resource_id

  step_scaling_policy_configuration {
    adjustment_type         = "ChangeInCapacity"
    cooldown                = 300
    metric_aggregation_type = "Maximum"

    step_adjustment {
      metric_interval_upper_bound = 0
      scaling_adjustment          = -1
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "worker_backlog_high" {
  count = local.worker_autoscaling ? 1 : 0

  alarm_name          = "${var.name}-checks-backlog-high"
  alarm_description   = "Scale fraudlens workers out: checks are waiting"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.main["checks"].name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 2
  threshold           = var.worker_scale_up_messages
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_appautoscaling_policy.worker_out[0].arn]
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "worker_backlog_empty" {
  count = local.worker_autoscaling ? 1 : 0

  alarm_name          = "${var.name}-checks-backlog-empty"
  alarm_description   = "Scale fraudlens workers in: the checks queue has been empty"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.main["checks"].name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 10
  threshold           = 0
  comparison_operator = "LessThanOrEqualToThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_appautoscaling_policy.worker_in[0].arn]
  tags                = local.tags
}
