# One customer-managed KMS key, rotated yearly by KMS, encrypts everything of this
# deployment that holds data: both data buckets (SSE-KMS), the image repository, the
# CloudWatch log groups (containers, database, WAF), the queues, the database storage, its
# Performance Insights data and the Secrets Manager secret with its password.
#
# The key policy keeps AWS's default delegation to the account (IAM policies decide who may
# use the key; the roles in iam.tf get only what they need, through the named services),
# and lets CloudWatch Logs use it for log groups of this account and region: Logs, unlike
# S3, SQS, ECR, RDS and Secrets Manager, calls KMS as its own service principal.

resource "aws_kms_key" "this" {
  description             = "fraudlens ${var.name}: data at rest (S3, ECR, logs, SQS, RDS, secrets)"
  key_usage               = "ENCRYPT_DECRYPT"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = local.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}

data "aws_iam_policy_document" "kms" {
  # These checks are written for identity policies. In a key policy, resource "*" means this
  # key only, and kms:* for the account root is AWS's default key policy: it hands the
  # decision to IAM, where the roles in iam.tf get only what they use.
  #checkov:skip=CKV_AWS_109:key policy; resource * is this key, root delegation is AWS's default key policy
  #checkov:skip=CKV_AWS_111:key policy; resource * is this key, root delegation is AWS's default key policy
  #checkov:skip=CKV_AWS_356:key policy; resource * is this key, not every resource
  statement {
    sid       = "AccountAdministersKeyThroughIAM"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid = "CloudWatchLogsEncryptsThisAccountsLogGroups"
    actions = [
      "kms:Decrypt",
      "kms:DescribeKey",
      "kms:Encrypt",
      "kms:GenerateDataKey*",
      "kms:ReEncrypt*",
    ]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"]
    }
  }
}
