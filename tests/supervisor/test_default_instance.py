"""What `make run` boots: the default manifest, from a scratch directory (the NVMe
disk image is created there), serving every domain it lists."""

import time


from redleaf.drivers.bdev import BLOCK_SIZE, BDev, Block
from redleaf.domains.builtin.echo import Echo
from redleaf.supervisor.manifest import load_manifest


def test_the_default_manifest_boots_and_serves(make_instance, tmp_path):
    inst = make_instance(None, cwd=str(tmp_path))
    names = {d.name for d in load_manifest(None).boot_order()}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        st = inst.status()
        if names <= set(st) and all(st[n]["state"] == "running" for n in names):
            break
        time.sleep(0.05)
    st = inst.status()
    assert {n: st.get(n, {}).get("state") for n in names} == {n: "running" for n in names}
    with inst.attach() as c:
        assert c.lookup("echo", Echo).inc(1) == 2
        bdev = c.lookup("nvme0", BDev)
        block_size, nblocks = bdev.info()
        assert block_size == BLOCK_SIZE and nblocks > 0
        buf = c.heap.alloc(Block)
        buf.np["data"][:] = 0x5A
        bdev.write(7, buf)
        buf.drop()
        back = bdev.read(7, c.heap.alloc(Block))
        assert (back.np["data"] == 0x5A).all()
        back.drop()
        from tests.drivers.ixgbe.netclient import NetClient

        net = NetClient(c, "ixgbe0")  # loopback wire: frames come back
        net.run(200)
        assert net.corrupt == 0 and net.duplicates == 0
        assert len(net.received) >= 180
    assert (tmp_path / "nvme0.img").exists()
    assert inst.request("heap", check=True)["violations"] == []
