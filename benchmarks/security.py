"""What the trust boundary costs, each figure beside its baseline in the same run.

    .venv/bin/python -m benchmarks.security

- Per request on the query path, in process: verifying the credential (twice: the gateway's
  edge and the input guardrail), signing and verifying both hand-offs (the screened request and
  a draft with five 1 kB evidence chunks). Baseline: serializing the same messages without a
  signature (what the path did before).
- On the wire: produce → consume round trips (acks=all, idempotent producer, one in flight) on
  two real brokers started side by side: the platform's SASL/SCRAM + ACL broker, and the same
  broker with a PLAINTEXT listener and no authorizer. Also the time to open an authenticated
  connection (SCRAM handshake) against a plaintext one.

Writes benchmarks/results/security.json and .png and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.ingest import percentile

PORTS = {"auth": (39292, 39293), "plain": (39392, 39393)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="in-process repetitions")
    parser.add_argument("--round-trips", type=int, default=300, help="Kafka round trips each")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="customllm-bench-security-"))
    os.environ.update({"CUSTOMLLM_STATE_DIR": str(state), "CUSTOMLLM_KAFKA_USERNAME": "admin",
                       "CUSTOMLLM_KAFKA_SASL_MECHANISM": "PLAIN", "CUSTOMLLM_LOG_LEVEL": "WARNING"})
    try:
        results = {"in_process": in_process(state, args.requests),
                   "kafka": kafka_round_trips(state, args.round_trips)}
    finally:
        shutil.rmtree(state, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "security.json").write_text(json.dumps(results, indent=2))
    _plot(results, args.out / "security.png")
    _print(results)


# --- in process --------------------------------------------------------------------------------

def _timed(fn: Callable[[], object], n: int) -> dict[str, float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": percentile(samples, 50), "p95_ms": percentile(samples, 95)}


def in_process(state: Path, n: int) -> dict[str, Any]:
    from services.common import handoff, identity
    from services.common.events import (
        DraftEvidence,
        Principal,
        RagReply,
        RagRequest,
        RetrievedChunk,
        Screening,
    )

    principal = Principal(id="alice", groups=["finance", "employees"], clearance="confidential")
    keys_file = state / "keys.yaml"
    for i in range(200):  # a realistic key file, not a single entry
        identity.add_key(keys_file, f"k{i}", principal)
    key = identity.add_key(keys_file, "alice", principal)
    store = identity.KeyStore(keys_file)
    screened = RagRequest(request_id="r-1", reply_to="rag.replies.gateway",
                          question="When are bonuses paid at Quillon Corp?",
                          principal=principal, screening=Screening(policy_version="default@1#ab"))
    chunks = [RetrievedChunk(chunk_id=f"c{i}", doc_id=f"d{i}", text="word " * 200)
              for i in range(5)]
    draft = RagReply(request_id="r-1", answer="Bonuses are paid in February [1].",
                     reply_to="rag.replies.gateway",
                     evidence=DraftEvidence(principal=principal, screening=screened.screening,
                                            retrieved=chunks))
    signer_g, signer_r = handoff.new_key("guardrails", "g1"), handoff.new_key("rag", "r1")
    trusted = {k.kid: handoff.TrustedKey(k.kid, k.signer, k.private_key.public_key())
               for k in (signer_g, signer_r)}
    wire_s = handoff.signed_json(screened, "screened-request", signer_g)
    wire_d = handoff.signed_json(draft, "draft", signer_r)

    def verify(wire: bytes, kind: str, signer: str) -> None:
        handoff.verify(json.loads(wire), kind, signer, trusted, 900)  # type: ignore[arg-type]

    figures = {
        "credential_verify": _timed(lambda: store.verify(key), n),
        "sign_screened": _timed(lambda: handoff.signed_json(screened, "screened-request",
                                                            signer_g), n),
        "verify_screened": _timed(lambda: verify(wire_s, "screened-request", "guardrails"), n),
        "sign_draft": _timed(lambda: handoff.signed_json(draft, "draft", signer_r), n),
        "verify_draft": _timed(lambda: verify(wire_d, "draft", "rag"), n),
        # Baseline: what the same hops cost without any of it (serialize, parse).
        "baseline_serialize_screened": _timed(lambda: json.loads(screened.to_json()), n),
        "baseline_serialize_draft": _timed(lambda: json.loads(draft.to_json()), n),
    }
    per_request = (2 * figures["credential_verify"]["p50_ms"]
                   + sum(figures[k]["p50_ms"] for k in ("sign_screened", "verify_screened",
                                                        "sign_draft", "verify_draft")))
    baseline = (figures["baseline_serialize_screened"]["p50_ms"]
                + figures["baseline_serialize_draft"]["p50_ms"])
    return {"figures": figures, "added_per_request_p50_ms": per_request,
            "baseline_per_request_p50_ms": baseline, "repetitions": n}


# --- on the wire -------------------------------------------------------------------------------

def kafka_round_trips(state: Path, n: int) -> dict[str, Any]:
    from services.stack import kafka

    out: dict[str, Any] = {}
    for mode, authenticated in (("auth", True), ("plain", False)):
        folder = state / mode
        folder.mkdir()
        port, controller = PORTS[mode]
        kafka.start(folder, port, controller, heap="512m", authenticated=authenticated)
        try:
            out[mode] = _measure(folder, f"127.0.0.1:{port}", authenticated, n)
        finally:
            kafka.stop(folder)
    out["added_p50_ms"] = out["auth"]["round_trip"]["p50_ms"] - \
        out["plain"]["round_trip"]["p50_ms"]
    return out


def _config(folder: Path, bootstrap: str, authenticated: bool) -> dict[str, Any]:
    from services.common import kafka_auth
    from services.stack import local_secrets

    if not authenticated:
        return {"bootstrap.servers": bootstrap, "security.protocol": "PLAINTEXT"}
    return kafka_auth.client_config(bootstrap, creds=local_secrets.admin_credentials(folder))


def _measure(folder: Path, bootstrap: str, authenticated: bool, n: int) -> dict[str, Any]:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    config = _config(folder, bootstrap, authenticated)
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(config)
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    connects = []
    for _ in range(10):
        started = time.perf_counter()
        AdminClient(config).list_topics(timeout=10)
        connects.append((time.perf_counter() - started) * 1000)
    producer = Producer({**config, "enable.idempotence": True, "acks": "all", "linger.ms": 0})
    consumer = Consumer({**config, "group.id": "bench", "enable.auto.commit": False,
                         "fetch.wait.max.ms": 5})
    consumer.assign([TopicPartition(topic, 0, 0)])
    samples = []
    for i in range(n + 20):  # the first 20 warm the connections
        started = time.perf_counter()
        producer.produce(topic, value=b"x" * 1000)
        producer.flush(10)
        message = None
        while message is None or message.error():
            message = consumer.poll(5)
        if i >= 20:
            samples.append((time.perf_counter() - started) * 1000)
    consumer.close()
    del producer, admin
    return {"round_trip": {"p50_ms": percentile(samples, 50), "p95_ms": percentile(samples, 95)},
            "connect": {"p50_ms": percentile(connects, 50), "p95_ms": percentile(connects, 95)},
            "n": n}


# --- report ------------------------------------------------------------------------------------

def _print(results: dict[str, Any]) -> None:
    inproc = results["in_process"]
    print("\nper request, in process (p50 / p95 ms)")
    for name, fig in inproc["figures"].items():
        print(f"  {name:32s} {fig['p50_ms']:8.3f} {fig['p95_ms']:8.3f}")
    print(f"  added per request (2 credential checks + 2 signs + 2 verifies): "
          f"{inproc['added_per_request_p50_ms']:.3f} ms p50; baseline serialization "
          f"{inproc['baseline_per_request_p50_ms']:.3f} ms")
    kafka = results["kafka"]
    print("\nKafka produce→consume round trip, 1 kB (p50 / p95 ms)")
    for mode in ("auth", "plain"):
        rt, conn = kafka[mode]["round_trip"], kafka[mode]["connect"]
        print(f"  {mode:6s} round trip {rt['p50_ms']:7.2f} {rt['p95_ms']:7.2f}   "
              f"new connection {conn['p50_ms']:7.2f} {conn['p95_ms']:7.2f}")
    print(f"  SASL/ACL added per round trip: {kafka['added_p50_ms']:.2f} ms p50")


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = results["in_process"]["figures"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = list(figures)
    left.barh(names, [figures[n]["p50_ms"] for n in names],
              color=["#888" if n.startswith("baseline") else "#3a7" for n in names])
    left.set_xlabel("ms (p50)")
    left.set_title("per request, in process")
    kafka = results["kafka"]
    modes = ["plain", "auth"]
    right.bar([f"{m}\nround trip" for m in modes],
              [kafka[m]["round_trip"]["p50_ms"] for m in modes], color=["#888", "#3a7"])
    right.bar([f"{m}\nconnect" for m in modes],
              [kafka[m]["connect"]["p50_ms"] for m in modes], color=["#bbb", "#7c9"])
    right.set_ylabel("ms (p50)")
    right.set_title("Kafka: PLAINTEXT baseline vs SASL/SCRAM + ACLs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
