from redleaf.supervisor.policy import RestartTracker


def test_permanent_restarts_first_immediately_then_backs_off():
    t = RestartTracker("permanent", max_restarts=5, period_s=10, backoff_s=0.1, backoff_max_s=1.0)
    delays = [t.on_exit(float(i) * 0.01, abnormal=True).delay_s for i in range(4)]
    assert delays == [0.0, 0.1, 0.2, 0.4]


def test_backoff_is_capped():
    t = RestartTracker("permanent", max_restarts=100, period_s=100, backoff_s=0.1, backoff_max_s=0.3)
    delays = [t.on_exit(0.0, abnormal=True).delay_s for _ in range(6)]
    assert max(delays) == 0.3


def test_intensity_exceeded_fails():
    t = RestartTracker("permanent", max_restarts=3, period_s=10)
    actions = [t.on_exit(float(i), abnormal=True).action for i in range(5)]
    assert actions == ["restart", "restart", "restart", "fail", "fail"]


def test_old_restarts_fall_out_of_the_period():
    t = RestartTracker("permanent", max_restarts=2, period_s=1)
    assert t.on_exit(0.0, True).action == "restart"
    assert t.on_exit(0.5, True).action == "restart"
    third = t.on_exit(5.0, True)   # the first two fell out: a quiet period again
    assert third.action == "restart" and third.delay_s == 0.0
    fourth = t.on_exit(5.0, True)  # the second in this period: backed off
    assert fourth.action == "restart" and fourth.delay_s == t.backoff_s


def test_transient_and_temporary():
    assert RestartTracker("transient").on_exit(0, abnormal=False).action == "stop"
    assert RestartTracker("transient").on_exit(0, abnormal=True).action == "restart"
    assert RestartTracker("temporary").on_exit(0, abnormal=True).action == "stop"
    assert RestartTracker("permanent").on_exit(0, abnormal=False).action == "restart"
    assert RestartTracker("permanent").on_exit(0, abnormal=True, requested=True).action == "stop"
