"""The fake Nomad reproduces the API semantics the executor relies on (hashicorp.md §2.6)."""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
from typing import Any

import requests

from tests.fakes.nomad import FakeNomad, Node


def _job(job_id: str, command: str = "/bin/sh", args: list[str] | None = None, **task: Any) -> dict[str, Any]:
    t = {"Name": "main", "Driver": "raw_exec", "Config": {"command": command, "args": args or ["-c", "true"]},
         "Resources": {"CPU": 100, "MemoryMB": 64}, "LogConfig": {"MaxFiles": 2, "MaxFileSizeMB": 1}, **task}
    return {"ID": job_id, "Type": "batch", "Datacenters": ["dc1"], "Meta": {"k": "v"},
            "TaskGroups": [{"Name": "task", "Count": 1, "Tasks": [t]}]}


def _wait_dead(fake: FakeNomad, job_id: str) -> dict[str, Any]:
    fake.wait_for(lambda: bool(fake.allocs_of(job_id)) and fake.allocs_of(job_id)[0]["ClientStatus"]
                  in ("complete", "failed", "lost"))
    return fake.allocs_of(job_id)[0]


def test_register_enforce_index_and_validation_errors_are_nomads_texts() -> None:
    with FakeNomad() as fake:
        body = {"EnforceIndex": True, "JobModifyIndex": 0, "Job": _job("j1")}
        first = requests.post(f"{fake.addr}/v1/jobs", json=body, timeout=5)
        assert first.status_code == 200 and first.headers["X-Nomad-Index"]
        assert set(first.json()) >= {"EvalID", "EvalCreateIndex", "JobModifyIndex", "Index", "Warnings"}
        again = requests.post(f"{fake.addr}/v1/jobs", json=body, timeout=5)
        assert again.status_code == 500 and again.text == "Enforcing job modify index 0: job already exists"
        bad = requests.put(f"{fake.addr}/v1/jobs", json={"Job": _job("has space")}, timeout=5)
        assert bad.status_code == 500 and bad.text == "1 error occurred:\n\t* Job ID contains a space\n\n"
        disk = requests.put(f"{fake.addr}/v1/jobs", json={"Job": _job("j2", LogConfig={"MaxFiles": 100,
                                                                                        "MaxFileSizeMB": 10})},
                            timeout=5)
        assert disk.status_code == 500 and "log storage (1000 MB)" in disk.text


def test_unknown_job_reads_and_deregister_are_nomads_answers() -> None:
    with FakeNomad() as fake:
        assert requests.get(f"{fake.addr}/v1/job/nope", timeout=5).status_code == 404
        allocs = requests.get(f"{fake.addr}/v1/job/nope/allocations", timeout=5)
        assert allocs.status_code == 200 and allocs.json() == []
        gone = requests.delete(f"{fake.addr}/v1/job/nope?purge=true", timeout=5)
        assert gone.status_code == 200 and gone.json()["EvalID"] == ""
        bad = requests.delete(f"{fake.addr}/v1/job/nope?purge=yes", timeout=5)
        assert bad.status_code == 400 and "strconv.ParseBool" in bad.text
        for word in ("1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"):
            assert requests.delete(f"{fake.addr}/v1/job/nope?purge={word}", timeout=5).status_code == 200


def test_blocking_queries_wait_for_the_table_index_to_pass() -> None:
    with FakeNomad() as fake:
        resp = requests.get(f"{fake.addr}/v1/allocations", timeout=5)
        index = int(resp.headers["X-Nomad-Index"])
        began = time.monotonic()
        idle = requests.get(f"{fake.addr}/v1/allocations", params={"index": index, "wait": "300ms"}, timeout=5)
        assert time.monotonic() - began >= 0.3 and int(idle.headers["X-Nomad-Index"]) == index
        threading.Timer(0.2, lambda: requests.put(f"{fake.addr}/v1/jobs", json={"Job": _job("j")}, timeout=5)).start()
        woke = requests.get(f"{fake.addr}/v1/allocations", params={"index": index, "wait": "10s"}, timeout=15)
        assert int(woke.headers["X-Nomad-Index"]) > index and woke.json()[0]["JobID"] == "j"


def test_event_stream_filters_topics_replays_from_an_index_and_sends_heartbeats() -> None:
    with FakeNomad(heartbeat=0.2) as fake:
        requests.put(f"{fake.addr}/v1/jobs", json={"Job": _job("a")}, timeout=5)
        requests.put(f"{fake.addr}/v1/jobs", json={"Job": _job("b")}, timeout=5)
        _wait_dead(fake, "a")
        _wait_dead(fake, "b")
        resp = requests.get(f"{fake.addr}/v1/event/stream", params={"index": 1, "topic": "Allocation:a"},
                            stream=True, timeout=5)
        lines: list[dict[str, Any]] = []
        for raw in resp.iter_lines():
            lines.append(json.loads(raw))
            if lines[-1] == {}:
                break
        resp.close()
        events = [e for m in lines for e in m.get("Events", [])]
        assert events and all(e["Topic"] == "Allocation" and "a" in e["FilterKeys"] for e in events)
        statuses = [e["Payload"]["Allocation"]["ClientStatus"] for e in events]
        assert statuses[-1] == "complete" and "running" in statuses
        assert lines[-1] == {}, "a heartbeat follows once nothing is left to send"
        assert requests.get(f"{fake.addr}/v1/event/stream", params={"topic": "A:b:c"}, timeout=5).status_code == 400


def test_client_fs_logs_plain_framed_offsets_rotation_and_files() -> None:
    code = "import sys\nfor i in range(300): print(f'{i:05d}')\nopen('../alloc/out.json','w').write('{}')"
    with FakeNomad(log_rotate_bytes=1000) as fake:
        requests.put(f"{fake.addr}/v1/jobs", json={"Job": _job("logs", sys.executable, ["-c", code])}, timeout=5)
        alloc = _wait_dead(fake, "logs")
        url = f"{fake.addr}/v1/client/fs"
        expected = "".join(f"{i:05d}\n" for i in range(300)).encode()
        plain = requests.get(f"{url}/logs/{alloc['ID']}", params={"task": "main", "type": "stdout", "plain": "true"},
                             timeout=5)
        assert plain.content == expected
        framed = requests.get(f"{url}/logs/{alloc['ID']}", params={"task": "main", "type": "stdout",
                                                                   "offset": 600}, timeout=5)
        decoder, buf, data, files = json.JSONDecoder(), framed.text, b"", set()
        while buf.strip():
            frame, end = decoder.raw_decode(buf.strip())
            buf = buf.strip()[end:]
            if frame.get("Data"):
                data += base64.b64decode(frame["Data"])
                files.add(frame["File"])
        assert data == expected[600:] and len(files) >= 2, "offsets span the rotated files"
        tail = requests.get(f"{url}/logs/{alloc['ID']}", params={"task": "main", "type": "stdout", "plain": "true",
                                                                 "origin": "end", "offset": 6}, timeout=5)
        assert tail.content == b"00299\n"
        for params, status in (({"type": "stdout"}, 400), ({"task": "main"}, 400),
                               ({"task": "main", "type": "stdout", "origin": "middle"}, 400)):
            assert requests.get(f"{url}/logs/{alloc['ID']}", params=params, timeout=5).status_code == status
        listing = requests.get(f"{url}/ls/{alloc['ID']}", params={"path": "alloc/logs"}, timeout=5).json()
        assert {f["Name"] for f in listing} >= {"main.stdout.0", "main.stdout.1"}
        assert requests.get(f"{url}/cat/{alloc['ID']}", params={"path": "alloc/out.json"}, timeout=5).text == "{}"
        part = requests.get(f"{url}/readat/{alloc['ID']}", params={"path": "alloc/logs/main.stdout.0", "offset": 6,
                                                                   "limit": 6}, timeout=5)
        assert part.content == b"00001\n"
        assert requests.get(f"{url}/cat/{alloc['ID']}", params={"path": "alloc/none"}, timeout=5).status_code == 500
        assert requests.get(f"{url}/cat/not-an-alloc", params={"path": "x"}, timeout=5).status_code == 404


def test_placement_failure_is_a_blocked_eval_with_failed_tg_allocs() -> None:
    with FakeNomad(nodes=[Node(memory_mb=1024)]) as fake:
        job = _job("big", Resources={"CPU": 100, "MemoryMB": 4096})
        requests.put(f"{fake.addr}/v1/jobs", json={"Job": job}, timeout=5)
        evals = requests.get(f"{fake.addr}/v1/job/big/evaluations", timeout=5).json()
        assert sorted(e["Status"] for e in evals) == ["blocked", "complete"]
        failed = next(e for e in evals if e["Status"] == "complete")
        assert failed["FailedTGAllocs"]["task"]["DimensionExhausted"] == {"memory": 1} and failed["BlockedEval"]
        assert requests.get(f"{fake.addr}/v1/job/big", timeout=5).json()["Status"] == "pending"
        summary = requests.get(f"{fake.addr}/v1/job/big/summary", timeout=5).json()
        assert summary["Summary"]["task"]["Queued"] == 1


def test_acl_tokens_are_enforced() -> None:
    with FakeNomad(acl_tokens={"t0k"}) as fake:
        assert requests.get(f"{fake.addr}/v1/jobs", timeout=5).text == "Permission denied"
        assert requests.get(f"{fake.addr}/v1/jobs", headers={"X-Nomad-Token": "t0k"}, timeout=5).status_code == 200
        assert requests.get(f"{fake.addr}/v1/jobs", headers={"Authorization": "Bearer t0k"},
                            timeout=5).status_code == 200
