"""Executors run task tries: ``agents`` (queues per agent pool, gRPC) and ``nomad`` (a batch job per try)."""
