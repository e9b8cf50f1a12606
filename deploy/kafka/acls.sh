#!/usr/bin/env bash
# Kafka ACLs per stage: each stage's principal may read its inputs (and its consumer
# group), write its outputs, dossier.status and dossier.dlq — nothing else. Apply with
# Apache Kafka's CLI against a cluster with an authorizer; each stage authenticates as
# User:motcua-<stage> (SASL SCRAM username, or the CN of its client certificate).
#
#   deploy/kafka/acls.sh --bootstrap-server kafka:9093 --command-config admin.properties
#   PREFIX=demo. deploy/kafka/acls.sh …     # a deployment with kafka.topic_prefix = "demo."
#   DRY_RUN=1 deploy/kafka/acls.sh          # print the commands only
#
# The table below is the stage table's (pipeline/wiring/src/stages.rs): inputs | outputs.
set -euo pipefail
prefix=${PREFIX:-}
kafka_acls=${KAFKA_ACLS:-kafka-acls.sh}

#            stage       reads                                   writes
stages=(
  "intake     dossier.submitted,dossier.supplemented,dossier.withdrawn,dossier.supplement-requested dossier.accepted,dossier.routed"
  "verify     dossier.accepted                        dossier.verified"
  "payment    dossier.verified,payment.confirmed      payment.requested,dossier.paid"
  "route      dossier.paid                            dossier.routed"
  "result     dossier.decided                         dossier.completed"
  "track      dossier.submitted,dossier.accepted,dossier.verified,payment.requested,payment.confirmed,dossier.paid,dossier.routed,dossier.decided,dossier.completed,dossier.status,dossier.dlq,dossier.supplemented,dossier.withdrawn,dossier.reappointed,dossier.supplement-requested -"
  "portal-sync dossier.status                         -"
)
# Outside systems: the portals publish submissions, the payment gateway confirmations,
# the back office decisions, new appointments and requests for papers; the portals read
# the statuses of their dossiers.
outside=(
  "portal     dossier.status                          dossier.submitted,dossier.supplemented,dossier.withdrawn"
  "gateway    payment.requested                       payment.confirmed"
  "backoffice dossier.routed                          dossier.decided,dossier.reappointed,dossier.supplement-requested"
)

run() {
  if [ -n "${DRY_RUN:-}" ]; then echo "$kafka_acls $*"; else "$kafka_acls" "$@"; fi
}

# One command per principal and kind of access (the CLI takes several --topic at once):
# Read and Describe on what it reads and on its consumer group; Write, Describe and
# DescribeConfigs on what it writes (a worker reads its outputs' max.message.bytes, so an
# output too large for the topic is dead-lettered rather than refused by the broker).
grant() {
  local who=$1 reads=$2 writes=$3 shift_args=("${@:4}")
  local principal="User:motcua-$who" t
  local read_args=() write_args=()
  for t in ${reads//,/ }; do read_args+=(--topic "$prefix$t"); done
  run "${shift_args[@]}" --add --allow-principal "$principal" --operation Read --operation Describe \
    "${read_args[@]}" --group "${prefix}motcua-$who"
  [ "$writes" = "-" ] && return 0
  for t in ${writes//,/ }; do write_args+=(--topic "$prefix$t"); done
  run "${shift_args[@]}" --add --allow-principal "$principal" --operation Write --operation Describe \
    --operation DescribeConfigs "${write_args[@]}"
}

for line in "${stages[@]}"; do
  read -r who reads writes <<<"$line"
  # Every stage reports statuses and dead-letters what it cannot handle (track writes
  # deadline warnings to dossier.status).
  [ "$writes" = "-" ] && writes="dossier.status,dossier.dlq" || writes="$writes,dossier.status,dossier.dlq"
  grant "$who" "$reads" "$writes" "$@"
done
for line in "${outside[@]}"; do
  read -r who reads writes <<<"$line"
  grant "$who" "$reads" "$writes" "$@"
done
