"""The Python baseline of the cost harness (benches/benches/cost.rs): a confluent-kafka
consume -> produce loop copying the bytes, with the same client settings as the Rust
loop (idempotent producer, acks=all, lz4; offsets stored as consumed and committed at
the end). Prints one `measured ...` line: process CPU (every thread) and wall time from
the first message received to the last output delivered, and the peak RSS."""

import argparse
import os
import resource
import time

from confluent_kafka import Consumer, Producer


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--brokers", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--input", required=True, help="topics, comma-separated")
    p.add_argument("--output", required=True)
    p.add_argument("--messages", type=int, required=True)
    a = p.parse_args()
    consumer = Consumer({
        "bootstrap.servers": a.brokers,
        "group.id": a.group,
        "client.id": a.group,
        "broker.address.family": "v4",
        "enable.auto.commit": True,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "partition.assignment.strategy": "cooperative-sticky",
    })
    producer = Producer({
        "bootstrap.servers": a.brokers,
        "client.id": a.group,
        "broker.address.family": "v4",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
    })
    consumer.subscribe(a.input.split(","))
    seen = 0
    start = None
    while seen < a.messages:
        for m in consumer.consume(num_messages=500, timeout=0.1):
            if m.error():
                raise SystemExit(f"consume: {m.error()}")
            if start is None:
                t = os.times()
                start = (t.user + t.system, time.monotonic())
            while True:
                try:
                    producer.produce(a.output, value=m.value(), key=m.key())
                    break
                except BufferError:
                    producer.poll(0.001)
            producer.poll(0)
            consumer.store_offsets(message=m)
            seen += 1
    producer.flush(60)
    consumer.commit(asynchronous=False)
    t = os.times()
    cpu = t.user + t.system - start[0]
    wall = time.monotonic() - start[1]
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"measured messages={seen} cpu_s={cpu} wall_s={wall} rss_kib={rss_kib}", flush=True)
    consumer.close()


if __name__ == "__main__":
    main()
