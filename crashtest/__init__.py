"""Fault-injection campaigns and fuzzers (redleaf crashtest)."""
