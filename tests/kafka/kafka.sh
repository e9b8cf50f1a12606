#!/usr/bin/env bash
# Apache Kafka brokers for the test suite, from Maven Central's jars (tests/kafka/pom.xml,
# version pinned there), in KRaft mode: each node is broker and controller at once.
#
#   kafka.sh jars                   # fetches the jars once per machine; prints their folder
#   kafka.sh single DIR PORT        # one plaintext node on 127.0.0.1:PORT (the suite's broker)
#   kafka.sh start NODE_DIR         # formats (first time) and starts the node NODE_DIR/server.properties
#                                   # describes, in the background; NODE_DIR/pid holds its pid
#   kafka.sh wait NODE_DIR [SECS]   # until the node says it started (exit 1, log printed, if not)
#   kafka.sh stop NODE_DIR          # SIGTERM, then SIGKILL after 20 s
#   kafka.sh tool CLASS ARGS…       # one of Kafka's command-line tools, e.g.
#                                   # org.apache.kafka.tools.AclCommand (kafka-acls.sh)
#
# A cluster of several nodes: write each NODE_DIR/server.properties with the same static
# `controller.quorum.voters`, put the cluster's id in the parent folder's `cluster.id`
# (made on first use), start every node, then wait for each. SCRAM users are created at
# format time: one `--add-scram` argument per line in NODE_DIR/format-args.
# The heap is sized for a 2-core CI machine: KAFKA_TEST_HEAP (default 512m) per node.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

jars() {
  local cache="${XDG_CACHE_HOME:-$HOME/.cache}/motcua/kafka-$(sha256sum "$here/pom.xml" | cut -c1-16)"
  if [ ! -f "$cache/.complete" ]; then
    rm -rf "$cache"
    echo "fetching Apache Kafka's jars into $cache (Maven Central, once per machine)" >&2
    mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$cache/jars" >&2
    touch "$cache/.complete"
  fi
  echo "$cache/jars"
}

# Sets JAVA to the JVM's command line for node folder $1 (the main class follows it).
java_for() {
  JAVA=(java -Xms128m "-Xmx${KAFKA_TEST_HEAP:-512m}" -XX:+UseSerialGC -XX:TieredStopAtLevel=1
    -Djava.awt.headless=true "-Dlog4j2.configurationFile=$here/log4j2.properties"
    "-Dkafka.logs.dir=$1" -cp "$(jars)/*")
}

format() {
  local dir=$1 cluster
  java_for "$dir"
  cluster="$(dirname "$dir")/cluster.id"
  # Two nodes starting together must agree on the id: mkdir is atomic.
  if mkdir "$cluster.lock" 2>/dev/null; then
    [ -s "$cluster" ] || "${JAVA[@]}" kafka.tools.StorageTool random-uuid >"$cluster"
  else
    while [ ! -s "$cluster" ]; do sleep 0.1; done
  fi
  local args=()
  if [ -f "$dir/format-args" ]; then
    while IFS= read -r line || [ -n "$line" ]; do [ -n "$line" ] && args+=(--add-scram "$line"); done <"$dir/format-args"
  fi
  "${JAVA[@]}" kafka.tools.StorageTool format -t "$(cat "$cluster")" -c "$dir/server.properties" \
    --ignore-formatted "${args[@]}" >"$dir/format.log" 2>&1 || { cat "$dir/format.log" >&2; return 1; }
}

start() {
  local dir=$1
  [ -f "$dir/server.properties" ] || { echo "no $dir/server.properties" >&2; return 1; }
  format "$dir"
  java_for "$dir"
  [ -f "$dir/broker.log" ] && cat "$dir/broker.log" >>"$dir/broker.log.old"
  # The node's own session: a SIGKILL of the node leaves nothing of it behind.
  setsid "${JAVA[@]}" kafka.Kafka "$dir/server.properties" >"$dir/broker.log" 2>&1 </dev/null &
  echo $! >"$dir/pid"
}

wait_ready() {
  local dir=$1 secs=${2:-120} pid
  pid=$(cat "$dir/pid")
  local deadline=$((SECONDS + secs))
  until grep -q "Kafka Server started" "$dir/broker.log" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "Kafka node $dir exited while starting; its log:" >&2
      tail -n 60 "$dir/broker.log" >&2
      return 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "Kafka node $dir did not start within ${secs}s; its log:" >&2
      tail -n 60 "$dir/broker.log" >&2
      return 1
    fi
    sleep 0.2
  done
}

stop() {
  local dir=$1 pid
  [ -f "$dir/pid" ] || return 0
  pid=$(cat "$dir/pid")
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
}

single() {
  local dir=$1 port=$2 node="$1/node-1"
  mkdir -p "$node"
  cat >"$node/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$((port + 1))
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$((port + 1))
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$node/data
num.partitions=2
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
group.initial.rebalance.delay.ms=0
delete.topic.enable=true
log.segment.bytes=16777216
# Test events carry their own times (2025 dates, simulated days ahead): kept and accepted
# whatever their age.
log.retention.ms=-1
log.message.timestamp.after.max.ms=9223372036854775807
EOF
  start "$node"
  wait_ready "$node"
}

tool() {
  local class=$1
  shift
  JAVA=(java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto
    "-Dlog4j2.configurationFile=$here/log4j2.properties" -cp "$(jars)/*")
  exec "${JAVA[@]}" "$class" "$@"
}

cmd=${1:-}
shift || true
case "$cmd" in
  jars) jars ;;
  single) single "$@" ;;
  start) start "$@" ;;
  wait) wait_ready "$@" ;;
  stop) stop "$@" ;;
  tool) tool "$@" ;;
  *) sed -n '2,19p' "$0" >&2; exit 2 ;;
esac
