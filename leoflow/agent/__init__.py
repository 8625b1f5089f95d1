"""leoflow-agent: runs task tries on hosts outside Nomad, dialing the server over gRPC."""
