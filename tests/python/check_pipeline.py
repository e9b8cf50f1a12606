#!/usr/bin/env python3
"""Counts what a pipeline run left in Kafka, with clients we did not write
(confluent-kafka to read, fastavro to decode with the committed schemas), and prints JSON:

    {"topics": {"<topic>": {"messages": N, "events": N, "repeated": N, "differing": N}},
     "dossiers": {"expected": N, "ended": N, "ended_twice": N, "not_ended": N,
                  "after_end": N, "by_end": {"result_returned": N, ...},
                  "examples": {...}}}

- "events": distinct event ids (each value's `event_id`); "repeated": messages beyond the
  first of an event id (re-emissions); "differing": event ids whose copies differ in a
  byte (key or value) — on the topics motcua writes ("own": true) the pipeline promises
  there are none; the outside world's re-sends (a gateway's duplicate confirmation) may.
- "waiting_on_citizen": dossiers not ended whose last status from a step (track's
  warnings aside) is supplement requested (5).
- a dossier ends when dossier.status announces rejected at reception (3), withdrawn (7),
  processing stopped (8) or result returned (10); "ended_twice" counts dossiers with two
  distinct ending events, "after_end" those with a status event after the ending one.

Reads every partition from the beginning to the end it finds at start, read_committed.

Usage: check_pipeline.py --bootstrap HOST:PORT [--prefix P] [--expected FILE] [--schemas DIR]
                         [--ends OUT]
       (FILE: one dossier id a line, the dossiers that were submitted; OUT: where to write
       {dossier id: its ending status code} for the dossiers that ended)
"""

import argparse
import csv
import io
import json
import os
import sys
from collections import defaultdict

import fastavro
from confluent_kafka import Consumer, TopicPartition

TOPICS = [
    "dossier.submitted", "dossier.accepted", "dossier.verified", "payment.requested",
    "payment.confirmed", "dossier.paid", "dossier.routed", "dossier.decided",
    "dossier.completed", "dossier.status", "dossier.dlq", "dossier.supplemented",
    "dossier.withdrawn", "dossier.reappointed", "dossier.supplement-requested",
]
# The topics motcua's stages write; the others are written by the outside world (portals,
# the payment gateway, the back office), whose re-sends may differ.
OWN = {
    "dossier.accepted", "dossier.verified", "payment.requested", "dossier.paid",
    "dossier.routed", "dossier.completed", "dossier.status", "dossier.dlq",
}
ENDINGS = {3: "rejected_at_reception", 7: "withdrawn", 8: "processing_stopped", 10: "result_returned"}


def load_schemas(root):
    """Schema id -> parsed writer schema, from the committed table."""
    named = {}
    schemas = {}
    with open(os.path.join(root, "schema-ids.csv")) as f:
        rows = [l for l in f if not l.startswith("#")]
    for row in csv.DictReader(rows):
        with open(os.path.join(root, row["file"])) as s:
            schemas[int(row["id"])] = fastavro.parse_schema(json.load(s), named_schemas=named)
    return schemas


def read_all(consumer, topic):
    """Every message of `topic` up to the ends seen now, in offset order per partition."""
    meta = consumer.list_topics(topic, timeout=30).topics[topic]
    if meta.error is not None:
        raise SystemExit(f"topic {topic}: {meta.error}")
    ends = {}
    for p in meta.partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
        if high > low:
            ends[p] = high
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])
    got = []
    done = set()
    while len(done) < len(ends):
        m = consumer.poll(30)
        if m is None:
            raise SystemExit(f"{topic}: nothing read for 30 s with {len(ends) - len(done)} partitions left")
        if m.error():
            raise SystemExit(f"{topic}: {m.error()}")
        got.append(m)
        if m.offset() + 1 >= ends[m.partition()]:
            done.add(m.partition())
    consumer.unassign()
    return got


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--prefix", default="")
    p.add_argument("--expected")
    p.add_argument("--schemas", default=os.path.join(os.path.dirname(__file__), "../../schemas"))
    p.add_argument("--examples", type=int, default=5)
    p.add_argument("--ends", help="write each ended dossier's ending status code here (JSON)")
    a = p.parse_args()
    schemas = load_schemas(a.schemas)
    consumer = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": "third-party-checker",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "broker.address.family": "v4",
    })
    report = {"topics": {}}
    statuses = defaultdict(list)  # dossier id -> [(partition, offset, event id, code)]
    for topic in TOPICS:
        first = {}
        counts = {"messages": 0, "events": 0, "repeated": 0, "differing": 0, "own": topic in OWN}
        differing = []
        for m in read_all(consumer, a.prefix + topic):
            counts["messages"] += 1
            value = m.value()
            if not value or value[0] != 0 or int.from_bytes(value[1:5], "big") not in schemas:
                counts["undecodable"] = counts.get("undecodable", 0) + 1
                continue
            schema = schemas[int.from_bytes(value[1:5], "big")]
            record = fastavro.schemaless_reader(io.BytesIO(value[5:]), schema)
            event_id = record["event_id"]
            copy = (m.key(), value)
            if event_id in first:
                counts["repeated"] += 1
                if first[event_id] != copy:
                    counts["differing"] += 1
                    differing.append(event_id)
                continue
            first[event_id] = copy
            counts["events"] += 1
            if topic == "dossier.status":
                statuses[record["dossier_id"]].append(
                    (m.partition(), m.offset(), event_id, record["status_code"], record.get("stage")))
        if differing:
            counts["differing_examples"] = differing[: a.examples]
        report["topics"][topic] = counts
    consumer.close()

    ended = {}
    twice, after = [], []
    by_end = defaultdict(int)
    for dossier, events in statuses.items():
        events.sort()
        ends = [(i, e) for i, e in enumerate(events) if e[3] in ENDINGS]
        if not ends:
            continue
        ended[dossier] = ends[0][1][3]
        by_end[ENDINGS[ends[0][1][3]]] += 1
        if len(ends) > 1:
            twice.append(dossier)
        elif ends[0][0] != len(events) - 1:
            after.append(dossier)
    expected = set()
    if a.expected:
        with open(a.expected) as f:
            expected = {l.strip() for l in f if l.strip()}
    missing = sorted(expected - set(ended))
    # Asked for papers by the last word of a step: waiting on the citizen, not stuck.
    # (Track's deadline and step warnings repeat the status the projection held then;
    # they are not a step's word.)
    def last_word(d):
        said = [e for e in statuses.get(d, []) if e[4] != "track"]
        return said[-1][3] if said else None
    waiting = [d for d in missing if last_word(d) == 5]
    report["dossiers"] = {
        "expected": len(expected),
        "with_status": len(statuses),
        "ended": len(ended),
        "ended_twice": len(twice),
        "after_end": len(after),
        "not_ended": len(missing),
        "waiting_on_citizen": len(waiting),
        "by_end": dict(by_end),
        "examples": {"ended_twice": twice[: a.examples], "after_end": after[: a.examples],
                     "not_ended": missing[: a.examples]},
        # The statuses each example went through, in order: code and stage.
        "trails": {d: [f"{e[3]} {e[4]}" for e in statuses.get(d, [])]
                   for d in (twice + after + missing)[: 3 * a.examples]},
    }
    if a.ends:
        with open(a.ends, "w") as f:
            json.dump(ended, f)
    json.dump(report, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    sys.exit(main())
