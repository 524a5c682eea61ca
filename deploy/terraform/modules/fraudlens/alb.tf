# Application load balancer in front of the scoring service. Clients speak HTTPS to it
# (certificate_arn, TLS 1.2/1.3 policy ssl_policy); port 80 only redirects to HTTPS. TLS
# ends at the load balancer: it forwards to the tasks on 8080 inside the VPC, and only the
# load balancer's security group may reach that port. The target group checks GET /ping,
# which answers 200 only once a model is loadable (SageMaker's contract too).

resource "aws_lb" "this" {
  name                       = "${var.name}-alb"
  load_balancer_type         = "application"
  internal                   = var.internal_alb
  security_groups            = [aws_security_group.alb.id]
  subnets                    = var.public_subnet_ids
  drop_invalid_header_fields = true
  enable_deletion_protection = var.alb_deletion_protection
  idle_timeout               = 60

  access_logs {
    bucket  = aws_s3_bucket.logs.id
    prefix  = "alb"
    enabled = true
  }

  tags = local.tags

  # The load balancer checks that it may write to the bucket when access logs are turned on.
  depends_on = [aws_s3_bucket_policy.logs]
}

resource "aws_lb_target_group" "service" {
  name                 = "${var.name}-svc"
  port                 = 8080
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 30

  health_check {
    path                = "/ping"
    port                = "traffic-port"
    protocol            = "HTTP"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = local.tags
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  # Port 80 serves nothing: every request is redirected to HTTPS.
  default_action {
    type = "redirect"

    redirect {
      port        = "443"
      protocol    = "HTTPS"
      status_code = "HTTP_301"
    }
  }

  tags = local.tags
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.service.arn
  }

  tags = local.tags
}
