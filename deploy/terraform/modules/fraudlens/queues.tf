# Two work queues, each with its dead-letter queue "<name>-dlq" (the name the fraudlens SQS
# adapter looks for):
# - checks: account checks consumed by the queue worker (FRAUDLENS_QUEUE_URL);
# - card_events: card transactions drained into the sink by the card event processor.
#
# The fraudlens adapter dead-letters a message itself, recording why, once it has been
# delivered max_attempts times. The SQS redrive policy is a backstop for a message the
# adapter never settles (a worker killed mid-message every time); its count is one above
# max_attempts so that the adapter, which keeps the reason, acts first.
#
# Messages are encrypted with the deployment's KMS key. A producer (for example a trading
# system sending checks) needs kms:GenerateDataKey and kms:Decrypt on that key besides
# sqs:SendMessage; the data key is reused for five minutes to keep KMS calls down.

resource "aws_sqs_queue" "dlq" {
  for_each = local.queue_names

  name                              = "${each.value}-dlq"
  message_retention_seconds         = var.dlq_retention_seconds
  kms_master_key_id                 = aws_kms_key.this.arn
  kms_data_key_reuse_period_seconds = 300
  tags                              = local.tags
}

resource "aws_sqs_queue" "main" {
  for_each = local.queue_names

  name                              = each.value
  visibility_timeout_seconds        = var.queue_visibility_timeout_seconds
  message_retention_seconds         = var.queue_retention_seconds
  receive_wait_time_seconds         = 20
  kms_master_key_id                 = aws_kms_key.this.arn
  kms_data_key_reuse_period_seconds = 300

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq[each.key].arn
    maxReceiveCount     = var.max_attempts + 1
  })

  tags = local.tags
}

resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  for_each = local.queue_names

  queue_url = aws_sqs_queue.dlq[each.key].id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.main[each.key].arn]
  })
}
