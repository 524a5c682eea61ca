# The image registry. One image serves every role: `serve`, `worker`, `process`,
# `db upgrade` (deploy/docker/Dockerfile). Tags are immutable by default, so a tag names one
# image for good: push each release under a new tag and set image_tag to it. Images are
# scanned on push and encrypted with the deployment's KMS key (ECR decrypts through a grant
# it holds on the key, so the roles that pull need no KMS permission of their own).

resource "aws_ecr_repository" "this" {
  name                 = var.name
  image_tag_mutability = var.ecr_image_tag_mutability
  force_delete         = var.force_destroy

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.this.arn
  }

  tags = local.tags
}

resource "aws_ecr_lifecycle_policy" "this" {
  repository = aws_ecr_repository.this.name
  policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "Expire untagged images after a day"
        selection = {
          tagStatus   = "untagged"
          countType   = "sinceImagePushed"
          countUnit   = "days"
          countNumber = 1
        }
        action = { type = "expire" }
      },
      {
        rulePriority = 2
        description  = "Keep the newest tagged images"
        selection = {
          tagStatus   = "any"
          countType   = "imageCountMoreThan"
          countNumber = var.ecr_keep_images
        }
        action = { type = "expire" }
      },
    ]
  })
}
