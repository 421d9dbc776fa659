"""An object a callee moves to its caller after the caller died (and was reclaimed)
must not stay owned by the dead caller: the supervisor sweeps once that call is over.

Found by `redleaf crashtest --workload nvme-rw --schedule simultaneous ... --seed 1
--replay 4,5`: the NVMe shadow killed while its driver waited on a stopped device left
the read buffer the driver moved back to it owned by the dead shadow, and `heap
--check` reported it until some other death swept it.  Staged here deterministically
with an in-call stall: the caller dies while the callee stalls inside `fill`, which
then allocates a vector and moves it to the dead caller."""

import time

from redleaf.domains.builtin.echo import Echo
from redleaf.domains.doorbell import RA_BUSY
from tests.conftest import process_running, wait_busy


def _fill_forever(instance: str, conn) -> None:
    from redleaf.domains import attach

    with attach(instance) as d:
        conn.send(d.domain_id)
        d.lookup("echo", Echo).fill(4096, 7)  # stalls in the callee; we are killed meanwhile


def test_an_object_moved_to_a_caller_that_died_mid_call_is_freed(echo_instance, second_client):
    inst = echo_instance
    inst.request("inject", name="echo", method="fill", nth=1, action="slow", stall_s=1.0)
    here, proc = second_client(_fill_forever, inst)
    assert here.poll(30)
    client_id = here.recv()
    with inst.attach() as d:
        echo_id = inst.status()["echo"]["id"]
        area = d.heap.runtime_area(echo_id)
        wait_busy(area, "echo")  # inside fill, stalling
        proc.kill()
        proc.join(10)
        assert not process_running(proc.pid)
        # the call ends: echo allocates and moves the vector to the dead client
        deadline = time.monotonic() + 30
        while area[RA_BUSY]:
            assert time.monotonic() < deadline, "echo never finished the stalled call"
            time.sleep(0.01)
        deadline = time.monotonic() + 10
        while True:
            v = inst.request("heap", check=True)["violations"]
            if not v:
                break
            assert time.monotonic() < deadline, f"still owned by the dead client {client_id}: {v}"
            time.sleep(0.02)
        assert inst.status()["echo"]["restarts"] == 0  # the callee was never at fault
