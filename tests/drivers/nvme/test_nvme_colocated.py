"""The NVMe stack with co-located domains (DESIGN §7a): a client domain and the
shadow in one group, the driver in its own process.  A kill -9 of the driver must
not reach the client, and must not disturb the group."""

import pytest

from redleaf.bench.nvme import colo_manifest


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "nvme0.img"
    yield str(path)
    path.unlink(missing_ok=True)


def test_a_shadow_colocated_with_its_client_hides_a_driver_kill(make_instance, image):
    from redleaf.bench.colo import NvmeLoad

    inst = make_instance(colo_manifest(image, "16MiB", shadow=True, driver_group="", heap="64MiB"))
    inst.wait_state("load", "running", timeout=30)
    before = inst.status()
    assert before["load"]["pid"] == before["nvme0"]["pid"] != before["nvme0.driver"]["pid"]
    assert before["nvme0.driver"]["group"] is None
    with inst.attach() as c:
        load = c.lookup("load", NvmeLoad)
        assert load.write_read(7, 1) == 4096  # the stack works
        # The driver dies between two calls of the client; the client's next request
        # reaches the shadow while the driver is dead or restarting, and the shadow
        # waits for it and issues it: the client sees no error (a DomainCrashed
        # or an NVMe error would reach here as an exception).
        inst.request("kill", name="nvme0.driver", how="sigkill")
        assert load.write_read(7, 3) == 3 * 4096
    after = inst.wait_state("nvme0.driver", "running", timeout=30, pid_not=before["nvme0.driver"]["pid"])
    st = inst.status()
    assert after["restarts"] >= 1
    for name in ("load", "nvme0"):  # the group was not touched
        assert st[name]["pid"] == before[name]["pid"] and st[name]["restarts"] == 0
    assert inst.request("heap", check=True)["violations"] == []
