"""The committed gRPC code must be exactly what grpcio-tools makes from proto/ today."""

from __future__ import annotations

from pathlib import Path

from leoflow.agentrpc import codegen


def test_committed_code_is_fresh(tmp_path: Path) -> None:
    written = codegen.generate(tmp_path / "gen")
    stale = [p.name for p in written if p.read_text() != (codegen.GEN_DIR / p.name).read_text()]
    assert not stale, f"regenerate with `python -m leoflow.agentrpc.codegen`; stale: {stale}"


def test_a_proto_change_is_detected(tmp_path: Path) -> None:
    proto_root = tmp_path / "proto"
    target = proto_root / codegen.PROTO
    target.parent.mkdir(parents=True)
    target.write_text((codegen.PROTO_ROOT / codegen.PROTO).read_text().replace(
        "string version = 5;", "string version = 5;\n  string extra_field = 99;"))
    written = codegen.generate(tmp_path / "gen", proto_root=proto_root)
    pb2 = next(p for p in written if p.name == "agent_pb2.py")
    assert pb2.read_text() != (codegen.GEN_DIR / "agent_pb2.py").read_text()


def test_package_is_versioned() -> None:
    from leoflow.agentrpc.gen import agent_pb2

    assert agent_pb2.DESCRIPTOR.package == "leoflow.agent.v1"
    assert "AgentService" in agent_pb2.DESCRIPTOR.services_by_name
