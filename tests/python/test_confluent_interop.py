"""Interop: the official confluent-kafka Python client against flowctl's schema registry.

Driven by tests/it/contracts.rs, which starts `registry_router` and the broker, produces orders
with flowctl through that registry, and passes:
  REGISTRY_URL   flowctl's registry (http://127.0.0.1:PORT)
  BOOTSTRAP      Kafka bootstrap servers
  TOPIC          topic flowctl produced to (orders family, clean events)
  EXPECTED       number of events flowctl produced
  PY_TOPIC       a fresh topic this script produces to with AvroSerializer
  SCHEMAS_DIR    the repo's schemas/ folder
Exits non-zero with a message on the first failed check. Run with plain `python3`.
"""

import json
import os
import sys


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


try:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext
except ImportError as e:  # a missing client must fail the test, not skip it
    fail(
        f"cannot import confluent_kafka's schema registry client ({e}); "
        "install it with: python3 -m pip install -r tests/python/requirements.txt"
    )

url = os.environ["REGISTRY_URL"]
bootstrap = os.environ["BOOTSTRAP"]
topic = os.environ["TOPIC"]
expected = int(os.environ["EXPECTED"])
py_topic = os.environ["PY_TOPIC"]
schemas_dir = os.environ["SCHEMAS_DIR"]

sr = SchemaRegistryClient({"url": url})

# 1. Registry reads: the subject flowctl registered is visible with its schema.
subjects = sr.get_subjects()
if f"{topic}-value" not in subjects:
    fail(f"expected subject {topic}-value in {subjects}")
latest = sr.get_latest_version(f"{topic}-value")
if latest.version != 1 or json.loads(latest.schema.schema_str)["name"] != "Order":
    fail(f"unexpected latest version {latest.version} / {latest.schema.schema_str[:80]}")
by_id = sr.get_schema(latest.schema_id)
if json.loads(by_id.schema_str) != json.loads(latest.schema.schema_str):
    fail("GET /schemas/ids/{id} disagrees with the subject's latest version")

# 2. Compatibility answers through the client.
with open(os.path.join(schemas_dir, "orders-incompatible.avsc")) as f:
    incompatible = f.read()
with open(os.path.join(schemas_dir, "orders-v2.avsc")) as f:
    v2 = f.read()
if sr.test_compatibility(f"{topic}-value", Schema(incompatible, "AVRO")):
    fail("orders-incompatible.avsc reported compatible")
if not sr.test_compatibility(f"{topic}-value", Schema(v2, "AVRO")):
    fail("orders-v2.avsc reported incompatible")

# 3. Decode every message flowctl produced with AvroDeserializer.
deser = AvroDeserializer(sr)
consumer = Consumer(
    {
        "bootstrap.servers": bootstrap,
        "group.id": f"interop-{topic}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "broker.address.family": "v4",
    }
)
meta = consumer.list_topics(topic, timeout=15)
parts = sorted(meta.topics[topic].partitions)
high = 0
for p in parts:
    _, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15)
    high += hi
if high != expected:
    fail(f"expected {expected} messages in {topic}, watermarks say {high}")
consumer.assign([TopicPartition(topic, p, 0) for p in parts])
decoded = 0
idle = 0
while decoded < expected and idle < 30:
    msgs = consumer.consume(num_messages=1000, timeout=1.0)
    if not msgs:
        idle += 1
        continue
    idle = 0
    for m in msgs:
        if m.error():
            fail(f"consumer error {m.error()}")
        order = deser(m.value(), SerializationContext(topic, MessageField.VALUE))
        if m.key().decode() != order["order_id"] or not order["order_id"].startswith("ord-"):
            fail(f"key {m.key()} does not match order_id {order['order_id']}")
        total = round(sum(i["quantity"] * i["unit_price"] for i in order["items"]), 2)
        if abs(total - order["amount"]) > 0.011:
            fail(f"amount {order['amount']} != sum of items {total} in {order}")
        decoded += 1
consumer.close()
if decoded != expected:
    fail(f"decoded {decoded} of {expected} messages")

# 4. Serialize with AvroSerializer (auto-registers through flowctl's registry), read it back.
with open(os.path.join(schemas_dir, "payments.avsc")) as f:
    payments = f.read()
ser = AvroSerializer(sr, payments)
producer = Producer(
    {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "broker.address.family": "v4"}
)
sent = []
for i in range(50):
    p = {
        "payment_id": f"py-{i}",
        "order_id": f"ord-py-{i}",
        "amount": 10.0 + i,
        "currency": "EUR",
        "method": "card",
        "status": "CAPTURED",
        "event_time": 1_763_900_000_000 + i,
    }
    producer.produce(py_topic, key=p["payment_id"], value=ser(p, SerializationContext(py_topic, MessageField.VALUE)))
    sent.append(p)
if producer.flush(30) != 0:
    fail("python producer did not deliver everything")
reg = sr.get_latest_version(f"{py_topic}-value")
if reg.schema_id != sr.lookup_schema(f"{py_topic}-value", Schema(payments, "AVRO")).schema_id:
    fail("lookup_schema disagrees with get_latest_version")

consumer = Consumer(
    {"bootstrap.servers": bootstrap, "group.id": f"interop-{py_topic}", "auto.offset.reset": "earliest", "broker.address.family": "v4"}
)
consumer.assign([TopicPartition(py_topic, p, 0) for p in sorted(consumer.list_topics(py_topic, timeout=15).topics[py_topic].partitions)])
got = []
idle = 0
while len(got) < len(sent) and idle < 30:
    msgs = consumer.consume(num_messages=100, timeout=1.0)
    idle = 0 if msgs else idle + 1
    for m in msgs:
        raw = m.value()
        if raw[0] != 0 or int.from_bytes(raw[1:5], "big") != reg.schema_id:
            fail(f"python-produced frame header {raw[:5]!r} does not carry schema id {reg.schema_id}")
        ev = deser(raw, SerializationContext(py_topic, MessageField.VALUE))
        # fastavro decodes timestamp-millis as an aware datetime.
        if hasattr(ev["event_time"], "timestamp"):
            ev["event_time"] = round(ev["event_time"].timestamp() * 1000)
        got.append(ev)
consumer.close()
key = lambda p: p["payment_id"]
if sorted(got, key=key) != sorted(sent, key=key):
    fail(f"round trip through AvroSerializer/AvroDeserializer changed the events: {got[:2]} vs {sent[:2]}")

print(f"OK: decoded {decoded} flowctl events; {len(got)} python events round-tripped with schema id {reg.schema_id}")
