"""Generated gRPC code for leoflow.agent.v1; regenerate with leoflow.agentrpc.codegen."""
