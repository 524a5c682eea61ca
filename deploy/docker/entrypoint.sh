#!/usr/bin/env bash
# Entrypoint of the fraudlens images: the first word of the container command picks what
# runs. SageMaker starts a serving container as `docker run IMAGE serve` and expects HTTP on
# 0.0.0.0:8080 with the models in /opt/ml/model (`fraudlens serve` looks there in a
# container when FRAUDLENS_MODELS_DIR is unset).
#
#   serve [ARGS]     fraudlens serve --host 0.0.0.0 --port 8080 [ARGS]
#   worker [ARGS]    fraudlens worker [ARGS]   (queue and store also from FRAUDLENS_QUEUE_URL
#                                              and FRAUDLENS_DATABASE_URL)
#   process [ARGS]   fraudlens cards process [ARGS]
#   train CMD [ARGS] fraudlens CMD [ARGS]      (training jobs: train market train --data ...)
#   anything else    fraudlens ...             (e.g. `db upgrade`, `models list`, `--help`)
#
# Environment read here:
#   FRAUDLENS_MODELS_URI  before serve, worker and process, copy the model registry from
#                         this fsspec URL (s3://bucket/models/) to FRAUDLENS_MODELS_DIR
#                         (default ./models). ECS tasks get their models this way.
#   FRAUDLENS_DB_UPGRADE  1: run `fraudlens db upgrade` (the store's migrations) before
#                         serve and worker.
set -euo pipefail

log() { printf 'fraudlens-entrypoint: %s\n' "$*" >&2; }

sync_models() {
  local src="${FRAUDLENS_MODELS_URI:-}"
  [[ -n "$src" ]] || return 0
  local dst="${FRAUDLENS_MODELS_DIR:-models}"
  log "copying the model registry from $src to $dst"
  python - "$src" "$dst" <<'PY'
import os
import sys

from fsspec.core import url_to_fs

src, dst = sys.argv[1], sys.argv[2]
fs, root = url_to_fs(src)
root = root.rstrip("/")
try:
    files = fs.find(root)
except FileNotFoundError:
    files = []
if not files:
    # Not fatal: the worker and processor still start, and the service answers 503 on
    # /ping until a registry is uploaded and the task restarted.
    print(f"fraudlens-entrypoint: no models under {src}", file=sys.stderr)
    sys.exit(0)
dst = os.path.abspath(dst)
copied = 0
for path in files:
    rel = path[len(root) :].strip("/")
    if not rel:
        continue
    target = os.path.normpath(os.path.join(dst, *rel.split("/")))
    if not target.startswith(dst + os.sep):
        sys.exit(f"fraudlens-entrypoint: refusing to copy {path!r} outside {dst}")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    # Written under a temporary name, so a partial file never looks like a model.
    fs.get_file(path, target + ".part")
    os.replace(target + ".part", target)
    copied += 1
print(f"fraudlens-entrypoint: copied {copied} file(s) to {dst}", file=sys.stderr)
PY
}

db_upgrade() {
  case "${FRAUDLENS_DB_UPGRADE:-0}" in
    1 | true | yes)
      log "upgrading the database schema"
      fraudlens db upgrade
      ;;
  esac
}

if [[ $# -eq 0 ]]; then
  set -- serve
fi
command="$1"
shift

case "$command" in
  serve)
    sync_models
    db_upgrade
    exec fraudlens serve --host 0.0.0.0 --port 8080 "$@"
    ;;
  worker)
    sync_models
    db_upgrade
    exec fraudlens worker "$@"
    ;;
  process)
    sync_models
    exec fraudlens cards process "$@"
    ;;
  train)
    if [[ $# -eq 0 ]]; then
      log "usage: train COMMAND [ARGS...], e.g. train market train --data DIR --model-dir DIR"
      exit 2
    fi
    exec fraudlens "$@"
    ;;
  *)
    exec fraudlens "$command" "$@"
    ;;
esac
