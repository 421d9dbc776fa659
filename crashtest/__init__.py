"""`redleaf crashtest`: fault-injection campaigns with invariant checks, and fuzzers (issue #18).

Layout, one layer a file:
  schedule.py   the fault plan, a pure function of the seed (no I/O)
  invariants.py what must hold after every fault and at the end (pure checks of
                snapshots the campaign takes)
  campaign.py   the I/O shell: boots or joins an instance, runs a workload, fires the
                plan, checks the invariants, records everything
  report.py     the report (text, JSON, plots) from a campaign's record
  workloads/    the built-in workloads (echo, nvme-rw, fs-ops, rv6-usertests) and a user's module:function
  fuzz/         one fuzzer a module of every input boundary, `run(count, seed) -> dict`
  cli.py        `redleaf crashtest ...`, loaded by the supervisor's CLI through the
                `redleaf.tools` entry point (the CLI never imports this package)

May call: supervisor (instance, manifests), drivers, rv6, domains, shared_heap.
Nothing imports it.
"""
