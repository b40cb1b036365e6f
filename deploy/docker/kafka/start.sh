#!/usr/bin/env bash
# Starts the Kafka broker of docker-compose.yml (image apache/kafka, run as its own user).
#
# The passwords never appear in the Compose file or the container's environment: they are read
# here from the files the `secrets` service put in this container's own volume
# (/run/customllm: admin.password, controller.password), and written only into a private copy
# of the configuration under /tmp. The admin (and the broker's own connections) authenticate with
# SASL/PLAIN against a user defined only in that private file, so the identity that creates every
# other user and the ACLs (`customllm security apply`, the `kafka-security` service) never depends
# on the cluster metadata; every other identity uses SCRAM-SHA-512.
set -euo pipefail
umask 077

secrets=${CUSTOMLLM_KAFKA_SECRETS:-/run/customllm}
admin=$(<"$secrets/admin.password")
controller=$(<"$secrets/controller.password")
[[ -n $admin && -n $controller ]] || { echo "kafka: empty password file in $secrets" >&2; exit 1; }

conf=/tmp/kafka
mkdir -p "$conf"
{
  cat /opt/customllm/kafka/server.properties
  echo "advertised.listeners=BROKER://kafka:9092,EXTERNAL://${KAFKA_EXTERNAL_ADVERTISED:?}"
  echo "listener.name.broker.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
  echo "listener.name.broker.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"admin\" password=\"$admin\" user_admin=\"$admin\";"
  echo "listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"controller\" password=\"$controller\" user_controller=\"$controller\";"
} >"$conf/server.properties"

# For the healthcheck (kafka-broker-api-versions.sh --command-config): a client needs to
# authenticate like every other one.
cat >"$conf/client.properties" <<PROPS
security.protocol=SASL_PLAINTEXT
sasl.mechanism=PLAIN
sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="$admin";
PROPS

# Format a new log directory only (later starts keep topics and offsets).
/opt/kafka/bin/kafka-storage.sh format --cluster-id="${CLUSTER_ID:?}" \
  --config="$conf/server.properties" --ignore-formatted

exec /opt/kafka/bin/kafka-server-start.sh "$conf/server.properties"
