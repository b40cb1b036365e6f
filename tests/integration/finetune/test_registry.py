"""The job table and the adapter registry on the real Postgres: idempotent intake, claims that
never collide, leases, cancel, the outbox, versions, promotion and rollback."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from services.common.events import FinetuneDataset, FinetuneRequest
from services.common.generation.adapters import AdapterLibrary
from services.finetune import jobs, registry

pytestmark = pytest.mark.integration

BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _request(adapter: str = "reg", **fields) -> FinetuneRequest:
    return FinetuneRequest(job_id=f"job-{uuid.uuid4().hex[:10]}", adapter_name=adapter,
                           dataset=FinetuneDataset(snapshot_id="0123456789"),
                           hyperparameters={"max_steps": 1}, **fields)


def _peft(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(uuid.uuid4().bytes)
    return folder


def _outbox(stack, job_id: str) -> list[str]:
    return [row[0] for row in stack.query(
        "SELECT payload->>'status' FROM finetune_outbox WHERE job_id = :j ORDER BY id",
        j=job_id)]


def _drain(stack) -> None:
    """Other tests' events: this module reads the outbox directly, with no relay running."""
    with stack.engine.begin() as conn:
        conn.execute(text("DELETE FROM finetune_outbox"))


def _close_live_jobs(stack) -> None:
    with stack.engine.begin() as conn:
        conn.execute(text("UPDATE finetune_jobs SET status = 'cancelled' "
                          "WHERE status IN ('queued', 'running', 'evaluating')"))


def test_a_job_is_queued_once_however_often_it_is_delivered(stack):
    request = _request()
    assert jobs.insert_job(stack.engine, request, BASE) is True
    assert jobs.insert_job(stack.engine, request, BASE) is False
    assert jobs.insert_job(stack.engine, request, BASE) is False
    assert stack.query("SELECT count(*) FROM finetune_jobs WHERE job_id = :j",
                       j=request.job_id)[0][0] == 1
    assert _outbox(stack, request.job_id) == ["queued"]
    job = jobs.get_job(stack.engine, request.job_id)
    assert job is not None and job.status == "queued" and job.request == request


def test_concurrent_workers_never_claim_the_same_job(stack):
    _close_live_jobs(stack)
    _drain(stack)
    queued = [_request() for _ in range(6)]
    for request in queued:
        jobs.insert_job(stack.engine, request, BASE)
    _drain(stack)  # a job with unsent events waits for them to go out first
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        while (claim := jobs.claim_next(stack.engine, f"w{n}", 60, 3)) is not None:
            with lock:
                claimed.append(claim.job.job_id)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(r.job_id for r in queued)
    for request in queued:
        job = jobs.get_job(stack.engine, request.job_id)
        assert job.status == "running" and job.attempt == 1 and job.worker_id
    _close_live_jobs(stack)


def test_an_expired_lease_is_resumed_then_failed_with_the_reason(stack):
    _close_live_jobs(stack)
    request = _request()
    jobs.insert_job(stack.engine, request, BASE)
    _drain(stack)
    first = jobs.claim_next(stack.engine, "dead-worker", 60, 2)
    assert first is not None and first.action == "start"
    # Nobody takes a job whose lease is alive.
    assert jobs.claim_next(stack.engine, "other", 60, 2) is None
    owned, cancel = jobs.heartbeat(stack.engine, request.job_id, "dead-worker", 1, 60,
                                   {"step": 3, "loss": 1.5})
    assert (owned, cancel) == (True, False)

    def expire() -> None:
        with stack.engine.begin() as conn:
            conn.execute(text("UPDATE finetune_jobs SET lease_expires_at = now() - "
                              "interval '1 second' WHERE job_id = :j"), {"j": request.job_id})

    expire()
    _drain(stack)
    second = jobs.claim_next(stack.engine, "rescuer", 60, 2)
    assert second is not None and second.action == "resume" and second.job.attempt == 2
    assert second.job.progress["step"] == 3  # what the dead worker reported survives
    # The dead worker, should it come back, has lost the job.
    assert jobs.heartbeat(stack.engine, request.job_id, "dead-worker", 1, 60) == (False, False)
    expire()
    _drain(stack)
    third = jobs.claim_next(stack.engine, "rescuer-2", 60, 2)
    assert third is not None and third.action == "fail"
    assert third.job.status == "failed"
    assert "rescuer stopped heartbeating during attempt 2" in third.job.error
    assert "gave up after 2 of 2" in third.job.error
    assert _outbox(stack, request.job_id) == ["failed"]


def test_cancel_before_start_means_it_never_starts(stack):
    _close_live_jobs(stack)
    request = _request()
    jobs.insert_job(stack.engine, request, BASE)
    assert jobs.request_cancel(stack.engine, request.job_id, "changed my mind") == "cancelled"
    assert jobs.request_cancel(stack.engine, request.job_id) == "cancelled"  # idempotent
    assert jobs.request_cancel(stack.engine, "no-such-job") is None
    _drain(stack)
    assert jobs.claim_next(stack.engine, "w", 60, 3) is None
    job = jobs.get_job(stack.engine, request.job_id)
    assert job.status == "cancelled" and job.error == "changed my mind"


def test_a_running_job_sees_its_cancel_on_the_next_heartbeat(stack):
    _close_live_jobs(stack)
    request = _request()
    jobs.insert_job(stack.engine, request, BASE)
    _drain(stack)
    claim = jobs.claim_next(stack.engine, "w", 60, 3)
    assert claim is not None
    assert jobs.request_cancel(stack.engine, request.job_id) == "running"
    assert jobs.heartbeat(stack.engine, request.job_id, "w", 1, 60) == (True, True)
    _close_live_jobs(stack)


def test_versions_promotion_rollback_and_retirement(stack, tmp_path):
    name = f"reg{uuid.uuid4().hex[:6]}"
    adapters_dir = tmp_path / "adapters"
    library = AdapterLibrary(adapters_dir)
    requests = [_request(adapter=name) for _ in range(2)]
    for request in requests:
        jobs.insert_job(stack.engine, request, BASE)
    common = {"adapters_dir": adapters_dir, "base_model": BASE, "method": "lora",
              "snapshot_id": "snap", "dataset_hash": "snap", "hyperparameters": {"lora_r": 4}}
    v1 = registry.register(stack.engine, name=name, job_id=requests[0].job_id,
                           source_dir=_peft(tmp_path / "out1"), **common)
    again = registry.register(stack.engine, name=name, job_id=requests[0].job_id,
                              source_dir=_peft(tmp_path / "out1"), **common)
    assert (v1.version, again.version) == (1, 1)  # a retried registration: same version
    v2 = registry.register(stack.engine, name=name, job_id=requests[1].job_id,
                           source_dir=_peft(tmp_path / "out2"), **common)
    assert v2.version == 2 and v2.status == "candidate" and v2.ref == f"{name}@v2"
    assert library.resolve(f"{name}@v2").label == "v2"
    assert library.available() == []

    registry.promote(stack.engine, name, 1, adapters_dir)
    assert library.resolve(name).label == "v1"
    promoted = registry.promote(stack.engine, name, 2, adapters_dir)
    assert promoted.status == "promoted" and promoted.promoted_at is not None
    assert library.resolve(name).label == "v2"
    assert registry.get(stack.engine, name, 1).status == "retired"
    assert registry.promoted(stack.engine, name).version == 2

    with pytest.raises(IntegrityError), stack.engine.begin() as conn:
        conn.execute(text("UPDATE adapters SET status = 'promoted' WHERE name = :n AND "
                          "version = 1"), {"n": name})

    registry.promote(stack.engine, name, 1, adapters_dir)  # rollback to a retired version
    assert library.resolve(name).label == "v1"
    registry.retire(stack.engine, name, 1, adapters_dir)
    assert library.available() == [] and registry.promoted(stack.engine, name) is None
    assert [v.status for v in registry.list_versions(stack.engine, name)] == \
        ["retired", "retired"]
    assert registry.get(stack.engine, name).version == 2  # newest when none is promoted


def test_outbox_keeps_each_jobs_events_in_order(stack):
    _close_live_jobs(stack)
    _drain(stack)
    request = _request()
    jobs.insert_job(stack.engine, request, BASE)
    # An unsent "queued" event holds the job back: "running" never overtakes it.
    assert jobs.claim_next(stack.engine, "w", 60, 3) is None
    with stack.engine.begin() as conn:
        pending = jobs.pending_events(conn)
        assert [(p[1], p[2]["status"]) for p in pending] == [(request.job_id, "queued")]
        jobs.mark_sent(conn, [p[0] for p in pending])
    claim = jobs.claim_next(stack.engine, "w", 60, 3)
    assert claim is not None and _outbox(stack, request.job_id) == ["running"]
    assert datetime.now(UTC) > claim.job.created_at
    _close_live_jobs(stack)


def test_the_cli_reads_and_changes_the_registry(stack, tmp_path):
    from typer.testing import CliRunner

    from services.cli.main import app
    from services.finetune.config import finetune_config

    cli = CliRunner()
    name = f"cli{uuid.uuid4().hex[:6]}"
    adapters_dir = finetune_config(stack.settings).adapters_dir
    request = _request(adapter=name)
    jobs.insert_job(stack.engine, request, BASE)
    registry.register(stack.engine, name=name, job_id=request.job_id,
                      source_dir=_peft(tmp_path / "out"), adapters_dir=adapters_dir,
                      base_model=BASE, method="lora", snapshot_id="snap", dataset_hash="snap",
                      hyperparameters={"lora_r": 4})
    registry.set_card(stack.engine, name, 1, f"# Adapter `{name}@v1`\n\nhello card")

    listed = cli.invoke(app, ["adapters", "list", name])
    assert listed.exit_code == 0 and f"{name}@v1" in listed.output and "candidate" in listed.output
    promoted = cli.invoke(app, ["adapters", "promote", f"{name}@v1"])
    assert promoted.exit_code == 0, promoted.output
    assert AdapterLibrary(adapters_dir).resolve(name).label == "v1"
    shown = cli.invoke(app, ["adapters", "show", name])
    assert shown.exit_code == 0 and "hello card" in shown.output
    assert f"--lora-modules {name}=" in shown.output and "adapter_source" in shown.output
    status = cli.invoke(app, ["finetune", "status", request.job_id])
    assert status.exit_code == 0 and "queued" in status.output
    assert request.job_id in cli.invoke(app, ["finetune", "list"]).output
    retired = cli.invoke(app, ["adapters", "retire", f"{name}@v1"])
    assert retired.exit_code == 0 and registry.promoted(stack.engine, name) is None
    missing = cli.invoke(app, ["finetune", "status", "no-such-job"])
    assert missing.exit_code == 1 and "no job" in missing.output
    _close_live_jobs(stack)


def test_a_discarded_work_copy_is_linked_and_a_users_folder_is_copied(stack, tmp_path):
    adapters_dir = tmp_path / "adapters"
    common = {"adapters_dir": adapters_dir, "base_model": BASE, "method": "lora",
              "snapshot_id": "snap", "dataset_hash": "snap", "hyperparameters": {}}
    linked_source = _peft(tmp_path / "work")
    copied_source = _peft(tmp_path / "mine")
    name = f"link{uuid.uuid4().hex[:6]}"
    linked = registry.register(stack.engine, name=name, job_id=None,
                               source_dir=linked_source, source_discarded=True, **common)
    copied = registry.register(stack.engine, name=name, job_id=None,
                               source_dir=copied_source, **common)

    weights = "adapter_model.safetensors"
    assert (Path(linked.path) / weights).stat().st_ino == (linked_source / weights).stat().st_ino
    assert (Path(copied.path) / weights).stat().st_ino != (copied_source / weights).stat().st_ino
    kept = (Path(linked.path) / weights).read_bytes()
    for folder in (linked_source, copied_source):  # the caller discards its work copy
        for item in folder.iterdir():
            item.unlink()
    assert (Path(linked.path) / weights).read_bytes() == kept
    assert (Path(copied.path) / "adapter_config.json").is_file()
