#!/usr/bin/env python3
"""A data team's consumer, written only with third-party tools: Confluent's Python client
(confluent-kafka) and its Schema Registry Avro deserializer. It reads every given topic
from the beginning to the end it finds at start, finds each message's writer schema in the
registry by the id in its first five bytes, and prints what it read as JSON:

    {"<topic>": {"messages": N, "decoded": N, "not_avro": N, "errors": N,
                 "schema_ids": [...], "fields": [...], "dossiers": N, "events": N}}

("events" counts distinct event ids: at-least-once stages may write an event twice, byte
for byte, and a consumer that counts deduplicates by event id.)

Usage: consume_all.py --bootstrap HOST:PORT --registry URL TOPIC [TOPIC...]
       (add --registry-user USER:PASSWORD for basic authentication)
"""

import argparse
import json
import sys
import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--registry", required=True)
    p.add_argument("--registry-user")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("topics", nargs="+")
    a = p.parse_args()

    registry_conf = {"url": a.registry}
    if a.registry_user:
        registry_conf["basic.auth.user.info"] = a.registry_user
    registry = SchemaRegistryClient(registry_conf)
    # No reader schema: every message is decoded with the writer schema the registry
    # holds under its id, so versions written after this script was written are read too.
    deserialize = AvroDeserializer(registry)

    consumer = Consumer(
        {
            "bootstrap.servers": a.bootstrap,
            "group.id": "third-party-data-team",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    report = {}
    todo = {}
    assignment = []
    for topic in a.topics:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        if meta.error is not None:
            print(f"topic {topic}: {meta.error}", file=sys.stderr)
            return 2
        report[topic] = {
            "messages": 0, "decoded": 0, "not_avro": 0, "errors": 0,
            "schema_ids": set(), "fields": set(), "dossiers": set(), "events": set(),
        }
        for partition in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high > low:
                todo[(topic, partition)] = high
                assignment.append(TopicPartition(topic, partition, low))
    consumer.assign(assignment)

    deadline = time.monotonic() + a.timeout
    while todo and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            print(f"consumer error: {msg.error()}", file=sys.stderr)
            continue
        key = (msg.topic(), msg.partition())
        end = todo.get(key)
        if end is None:
            continue
        if msg.offset() + 1 >= end:
            del todo[key]
        r = report[msg.topic()]
        r["messages"] += 1
        value = msg.value() or b""
        if len(value) < 5 or value[0] != 0:
            r["not_avro"] += 1
            continue
        try:
            record = deserialize(value, SerializationContext(msg.topic(), MessageField.VALUE))
        except Exception as e:  # noqa: BLE001 - counted and reported, never fatal
            r["errors"] += 1
            print(f"{msg.topic()}[{msg.partition()}]@{msg.offset()}: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        r["decoded"] += 1
        r["schema_ids"].add(int.from_bytes(value[1:5], "big"))
        r["fields"].update(record.keys())
        if record.get("event_id"):
            r["events"].add(record["event_id"])
        if record.get("dossier_id"):
            r["dossiers"].add(record["dossier_id"])
    consumer.close()
    if todo:
        print(f"timed out with {len(todo)} partitions unread", file=sys.stderr)
        return 3

    for r in report.values():
        r["schema_ids"] = sorted(r["schema_ids"])
        r["fields"] = sorted(r["fields"])
        r["dossiers"] = len(r["dossiers"])
        r["events"] = len(r["events"])
    json.dump(report, sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
