#!/usr/bin/env bash
# Apache Kafka's kafka-acls.sh, from the test suite's jars (for deploy/kafka/acls.sh:
# KAFKA_ACLS=tests/kafka/kafka-acls.sh).
exec "$(dirname "$0")/kafka.sh" tool org.apache.kafka.tools.AclCommand "$@"
