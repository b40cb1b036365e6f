#!/usr/bin/env bash
# The `secrets` service of docker-compose.yml: generates every credential of the deployment once
# and gives each container only its own, so no password is ever written in the Compose file or
# passed as an environment variable.
#
#   /secrets/all          volume `secrets`: the master copy, `customllm security init` layout
#                         (secrets/kafka/<identity>.password, secrets/handoff/, api-keys.yaml,
#                         api-keys/<name>.key) plus postgres.password; mounted by nothing else
#   /secrets/<identity>   volume `secrets-<identity>`: what that identity's containers mount,
#                         read-only, at /run/customllm
#
# Runs as root (it has to hand files to other users) with CHOWN/FOWNER/DAC_OVERRIDE only, and
# is idempotent: existing secrets are kept, copies are refreshed atomically, so re-running it
# after `customllm keys create|revoke` (see docker-compose.yml) updates the key file that
# gateway, guardrails and the model server watch, without a restart.
set -euo pipefail
umask 077

ROOT=${SECRETS_ROOT:-/secrets}
ALL=$ROOT/all
APP_UID=${APP_UID:-10001}      # the customllm image's user (deploy/docker/Dockerfile)
KAFKA_UID=${KAFKA_UID:-1000}   # apache/kafka's appuser

customllm security init "$ALL"
src=$ALL/secrets
pg=$src/postgres.password
if [[ ! -s $pg ]]; then  # URL-safe, 256 bits; written before it is readable by anyone else
  python -c 'import secrets, sys; sys.stdout.write(secrets.token_urlsafe(32))' >"$pg.tmp"
  mv -f "$pg.tmp" "$pg"
fi

# put VOLUME OWNER MODE SOURCE NAME: an atomic copy (write, then rename) into one volume.
put() {
  local dir=$ROOT/$1 owner=$2 mode=$3 source=$4 name=$5
  install -d -o "$owner" -g "$owner" -m 0500 "$dir"
  install -o "$owner" -g "$owner" -m "$mode" "$source" "$dir/.$name.tmp"
  mv -f "$dir/.$name.tmp" "$dir/$name"
}
# pgpass VOLUME: libpq's password file for the Compose Postgres (PGPASSFILE); must be 0600 or
# stricter, or libpq ignores it.
pgpass() {
  local tmp
  tmp=$(mktemp)
  printf 'postgres:5432:customllm:customllm:%s\n' "$(<"$pg")" >"$tmp"
  put "$1" "$APP_UID" 0400 "$tmp" pgpass
  rm -f "$tmp"
}

# The broker: the admin's SCRAM credential (added at format time) and the controller link.
# Only the broker mounts this volume; its user's uid differs between image versions, so the
# files are readable inside it whatever that uid is.
put kafka "$KAFKA_UID" 0444 "$src/kafka/admin.password" admin.password
put kafka "$KAFKA_UID" 0444 "$src/kafka/controller.password" controller.password
chmod 0555 "$ROOT/kafka"
# Postgres reads POSTGRES_PASSWORD_FILE as root and again as its own user.
put postgres "${PG_UID:-0}" 0444 "$pg" postgres.password
chmod 0555 "$ROOT/postgres"

# The admin (setup jobs): `customllm security apply --secrets-root /run/customllm` reads every
# identity's password to create the SCRAM users; `customllm topics` creates the topics.
for file in "$src"/kafka/*.password; do
  name=$(basename "$file")
  [[ $name == controller.password ]] && continue
  install -d -o "$APP_UID" -g "$APP_UID" -m 0500 "$ROOT/admin" "$ROOT/admin/secrets"
  put admin/secrets/kafka "$APP_UID" 0400 "$file" "$name"
done
pgpass migrate

# One volume per platform identity: its Kafka password, plus what only it needs.
for identity in ingest embedder guardrails rag gateway finetune audit operator; do
  put "$identity" "$APP_UID" 0400 "$src/kafka/$identity.password" kafka.password
done
for identity in ingest embedder guardrails rag finetune audit console operator; do
  pgpass "$identity"
done
# Signed hand-offs: each signing stage its private key, both the public trust file.
for signer in guardrails rag; do
  put "$signer" "$APP_UID" 0400 "$src/handoff/$signer.key" handoff.key
  put "$signer" "$APP_UID" 0400 "$src/handoff/trusted.json" trusted.json
done
# Hashed API keys: the gateway and the input guardrail verify callers, the model server too,
# and the audit recorder the authors of feedback.
for identity in gateway guardrails model-server audit console; do
  put "$identity" "$APP_UID" 0400 "$src/api-keys.yaml" api-keys.yaml
done
# The console's session-signing key: made once, kept across restarts, never leaves its volume.
if [[ ! -s $src/console-session.key ]]; then
  (umask 077; head -c 48 /dev/urandom | base64 | tr -d '\n' > "$src/console-session.key")
fi
put console "$APP_UID" 0400 "$src/console-session.key" console-session.key
# Plaintext API keys of the platform's own callers: the promotion gate and the operator.
put finetune "$APP_UID" 0400 "$src/api-keys/finetune.key" api.key
put operator "$APP_UID" 0400 "$src/api-keys/operator.key" api.key

echo "secrets ready: one volume per identity (master copy in volume secrets)"
