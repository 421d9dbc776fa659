"""An idle instance costs next to nothing: devices sleep until their doorbell (no timer),
domains sleep on theirs between watchdog beats. The test prints the CPU figure (the
benchmark row is `redleaf bench lifecycle`'s idle-cpu) and checks the event counts that
make it so, not a time."""

import time


def test_an_idle_default_instance_sleeps(make_instance, tmp_path):
    inst = make_instance(None, cwd=str(tmp_path))   # the default manifest
    time.sleep(1.0)                                  # let the boot's work finish
    seconds = 5.0
    use = inst.cpu_usage(seconds)
    total = sum(u["cpu_pct"] for u in use.values())
    print(f"\nidle default instance: {total:.2f}% of one core over {seconds:.0f}s")
    for title, u in sorted(use.items()):
        print(f"  {title:40s} {u['cpu_pct']:5.2f}%  {u['wakes']} wake-ups")
    devices = {t: u for t, u in use.items() if t.endswith("-dev")}
    assert len(devices) == 2, use.keys()
    # a device with no work is never woken (it used to wake every 20 ms: 250 in 5 s)
    assert all(u["wakes"] <= 2 for u in devices.values()), devices
    # a domain wakes about once a second to beat for the watchdog (it used to be 10/s)
    domains = {t: u for t, u in use.items() if t.split("/")[-1] in ("echo", "nvme0", "nvme0.driver")}
    assert len(domains) == 3 and all(u["wakes"] <= 4 * seconds for u in domains.values()), domains


def test_status_shows_the_absolute_image_path(make_instance, tmp_path):
    """A relative image path resolves against the directory `redleaf up` runs in."""
    inst = make_instance(None, cwd=str(tmp_path))
    assert inst.status()["nvme0-dev"]["image"] == str(tmp_path / "nvme0.img")
    assert (tmp_path / "nvme0.img").exists()
