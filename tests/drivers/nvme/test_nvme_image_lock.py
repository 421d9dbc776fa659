"""Two instances on one disk image: the second one's device is refused, with an
error naming the process (the first instance's device) that holds the image."""

from __future__ import annotations

import time

from redleaf.drivers.nvme.manifests import nvme_manifest


def test_a_second_instance_on_the_same_image_is_told_who_holds_it(make_instance, tmp_path):
    image = str(tmp_path / "nvme0.img")
    first = make_instance(nvme_manifest(image))
    holder = first.wait_state("nvme0-dev", "running")["pid"]
    second = make_instance(nvme_manifest(image))
    want = f"disk image in use by pid {holder}"
    deadline = time.monotonic() + 30
    while want not in second.output():              # the device's init_failed, logged
        assert time.monotonic() < deadline, second.output()[-2000:]
        time.sleep(0.05)
    assert second.status()["nvme0-dev"]["state"] != "running"
    assert first.status()["nvme0-dev"]["state"] == "running"
