# Optional SageMaker real-time endpoint running the same image. SageMaker starts it as
# `docker run IMAGE serve`, unpacks the model tarball into /opt/ml/model and checks /ping
# on port 8080; the entrypoint and `fraudlens serve` follow that contract. Upload the
# tarball (a tar.gz of the registry folder) to s3://<models bucket>/<sagemaker_model_data_key>
# before enabling it.

resource "aws_sagemaker_model" "this" {
  count = var.enable_sagemaker ? 1 : 0

  # No name: SageMaker models cannot be updated in place, and a generated name lets a
  # replacement exist beside the old one until the endpoint has moved over.
  execution_role_arn = aws_iam_role.sagemaker[0].arn
  # The container makes no outbound calls: SageMaker itself unpacks the model tarball into
  # /opt/ml/model, and `serve` reads it from there.
  enable_network_isolation = true

  primary_container {
    image          = local.image
    mode           = "SingleModel"
    model_data_url = "s3://${aws_s3_bucket.this["models"].bucket}/${var.sagemaker_model_data_key}"
    environment = {
      FRAUDLENS_LOG_JSON = "true"
      # SageMaker's runtime authenticates callers itself (IAM, InvokeEndpoint) and cannot
      # send the service's bearer tokens; with network isolation nothing else reaches the
      # container, so the service's own sign-in stays off here.
      FRAUDLENS_AUTH = "off"
    }
  }

  tags = local.tags

  # The role's policy must exist before SageMaker tries to pull with it.
  depends_on = [aws_iam_role_policy.sagemaker]

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_sagemaker_endpoint_configuration" "this" {
  count = var.enable_sagemaker ? 1 : 0

  name_prefix = "${var.name}-"
  # The instances' storage volumes; serverless endpoints take no key (AWS encrypts them).
  kms_key_arn = local.sagemaker_serverless ? null : aws_kms_key.this.arn

  production_variants {
    variant_name           = "primary"
    model_name             = aws_sagemaker_model.this[0].name
    initial_instance_count = local.sagemaker_serverless ? null : var.sagemaker_instance_count
    instance_type          = local.sagemaker_serverless ? null : var.sagemaker_instance_type

    dynamic "serverless_config" {
      for_each = local.sagemaker_serverless ? [1] : []
      content {
        memory_size_in_mb = var.sagemaker_serverless_memory_mb
        max_concurrency   = var.sagemaker_serverless_max_concurrency
      }
    }
  }

  tags = local.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_sagemaker_endpoint" "this" {
  count = var.enable_sagemaker ? 1 : 0

  name                 = var.name
  endpoint_config_name = aws_sagemaker_endpoint_configuration.this[0].name
  tags                 = local.tags
}
