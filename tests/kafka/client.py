#!/usr/bin/env python3
"""An independent Kafka client for questline's integration tests (confluent-kafka, its own
librdkafka): produces the inputs and reads the outputs, so the wire formats are checked by
someone else's code.

  client.py produce BOOTSTRAP TOPIC [unbatched] < lines   # each line: KEY<TAB>VALUE (key may be empty);
                                                         # QL_PRODUCE_HEADERS (a JSON object) gives
                                                         # every record those headers; with
                                                         # QL_PRODUCE_TIMESTAMPS=1 each line is
                                                         # KEY<TAB>VALUE<TAB>TIMESTAMP_MS
  client.py consume BOOTSTRAP COUNT TIMEOUT TOPIC...   # prints one JSON object per record
  client.py drain BOOTSTRAP IDLE TIMEOUT TOPIC...      # every record, until IDLE s without one
  client.py dump BOOTSTRAP IDLE TIMEOUT TOPIC...       # like drain, as `questline replay --records`
                                                       # lines (schemas/kafka-record.v1.json)
  client.py create BOOTSTRAP PARTITIONS TOPIC...

QL_KAFKA_CLIENT_CONFIG (a JSON object of librdkafka properties, e.g. TLS and SASL settings), when
set, is added to every client's configuration.
"""
import base64
import json
import os
import sys
import time
import uuid

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


EXTRA = json.loads(os.environ.get("QL_KAFKA_CLIENT_CONFIG") or "{}")


def configured(config):
    """`config` with the extra properties of QL_KAFKA_CLIENT_CONFIG."""
    return {**config, **EXTRA}


def produce(bootstrap, topic, unbatched=False):
    config = {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
              "partitioner": "murmur2_random", "linger.ms": 5,
              "message.max.bytes": 16 * 1024 * 1024}
    if unbatched:
        # One record per record batch. tansu 0.6.0 answers a fetch at an offset inside a batch
        # with the NEXT batch, silently skipping the rest of the one holding the offset, so a
        # consumer resuming at a committed offset mid-batch (restart, rebalance) loses records
        # on tansu that Kafka would deliver. Tests of resumption produce unbatched.
        config.update({"linger.ms": 0, "batch.num.messages": 1})
    producer = Producer(configured(config))
    headers = list(json.loads(os.environ.get("QL_PRODUCE_HEADERS") or "{}").items())
    # Record timestamps from the input (event-time tests: days of a streak), else the clock's.
    timestamped = os.environ.get("QL_PRODUCE_TIMESTAMPS") == "1"
    errors = []
    count = 0
    for line in sys.stdin.buffer:
        line = line.rstrip(b"\n")
        if not line:
            continue
        key, _, value = line.partition(b"\t")
        extra = {}
        if timestamped:
            value, _, timestamp = value.rpartition(b"\t")
            extra["timestamp"] = int(timestamp)
        producer.produce(topic, key=key or None, value=value, headers=headers or None,
                         on_delivery=lambda err, msg: errors.append(str(err)) if err else None,
                         **extra)
        count += 1
        if count % 10000 == 0:
            producer.poll(0)
    remaining = producer.flush(60)
    if remaining or errors:
        sys.exit(f"produce failed: {remaining} undelivered, errors {errors[:3]}")
    print(count)


def described(msg):
    """A record as the tests read it: the value parsed as JSON when it is, headers as text."""
    value = msg.value() or b""
    try:
        decoded = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        decoded = {"_base64": base64.b64encode(value).decode()}
    headers = {k: (v or b"").decode("utf-8", "replace") for k, v in (msg.headers() or [])}
    _, timestamp = msg.timestamp()
    return {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(),
            "timestamp": timestamp,
            "key": (msg.key() or b"").decode("utf-8", "replace"), "headers": headers,
            "value": decoded}


def dumped(msg):
    """A record as a line of a topic dump (schemas/kafka-record.v1.json): the value's exact
    bytes, as text when they are UTF-8 and as base64 otherwise."""
    kind, timestamp = msg.timestamp()
    line = {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(),
            "timestamp": None if kind == TIMESTAMP_NOT_AVAILABLE else timestamp,
            "key": None if msg.key() is None else msg.key().decode("utf-8", "replace")}
    value = msg.value()
    try:
        line["value"] = None if value is None else value.decode("utf-8")
    except UnicodeDecodeError:
        line["valueBase64"] = base64.b64encode(value).decode()
    return line


def consume(bootstrap, count, timeout, topics, idle=None, form=described):
    """Prints records as JSON lines (`form` of each): up to `count` within `timeout` seconds, or
    with `idle`, every record until `idle` seconds pass without one (counted from the first
    assignment)."""
    assigned = []
    consumer = Consumer(configured({"bootstrap.servers": bootstrap,
                                    "group.id": f"verify-{uuid.uuid4()}",
                                    "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                    "fetch.wait.max.ms": 20}))
    consumer.subscribe(topics, on_assign=lambda c, parts: assigned.append(time.monotonic()))
    seen = 0
    deadline = time.monotonic() + timeout
    last = None
    while seen < count and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is None or msg.error():
            if idle is not None and assigned:
                since = last if last is not None else assigned[0]
                if time.monotonic() - since >= idle:
                    break
            continue
        last = time.monotonic()
        print(json.dumps(form(msg)), flush=True)
        seen += 1
    consumer.close()


def create(bootstrap, partitions, topics):
    admin = AdminClient(configured({"bootstrap.servers": bootstrap}))
    futures = admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics])
    for topic, f in futures.items():
        try:
            f.result(15)
        except Exception as e:  # noqa: BLE001 - reported to the caller
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                sys.exit(f"create {topic}: {e}")


def committed(bootstrap, group, topic, partitions):
    consumer = Consumer(configured({"bootstrap.servers": bootstrap, "group.id": group,
                                    "enable.auto.commit": False}))
    parts = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    print(json.dumps({str(p.partition): p.offset for p in parts}))
    consumer.close()


if __name__ == "__main__":
    cmd, bootstrap = sys.argv[1], sys.argv[2]
    if cmd == "produce":
        produce(bootstrap, sys.argv[3], unbatched=sys.argv[4:5] == ["unbatched"])
    elif cmd == "consume":
        consume(bootstrap, int(sys.argv[3]), float(sys.argv[4]), sys.argv[5:])
    elif cmd == "drain":
        consume(bootstrap, float("inf"), float(sys.argv[4]), sys.argv[5:], idle=float(sys.argv[3]))
    elif cmd == "dump":
        consume(bootstrap, float("inf"), float(sys.argv[4]), sys.argv[5:], idle=float(sys.argv[3]),
                form=dumped)
    elif cmd == "create":
        create(bootstrap, int(sys.argv[3]), sys.argv[4:])
    elif cmd == "committed":
        committed(bootstrap, sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        sys.exit(f"unknown command {cmd}")
