import pytest
import torch

from simqos.profiler.timer import Measurement, measure, torch_threads


class FakeClock:
    """Time advances only when the timed function runs."""

    def __init__(self, per_call_s):
        self.now = 0.0
        self.per_call_s = per_call_s
        self.calls = 0

    def __call__(self):
        return self.now

    def work(self):
        self.now += self.per_call_s
        self.calls += 1


def test_bookkeeping_with_a_fake_clock():
    clock = FakeClock(0.3e-3)
    m = measure(clock.work, n_samples=5, min_sample_s=1e-3, warmup_s=2.9e-3, clock=clock)
    # calibration doubles 1, 2, 4: four calls (1.2 ms) are the first batch >= 1 ms
    assert m.calls_per_sample == 4
    assert m.samples_ms == pytest.approx((0.3,) * 5)
    assert m.median_ms == pytest.approx(0.3) and m.iqr_ms == pytest.approx(0.0, abs=1e-12)
    # warm-up: 10 single calls pass 2.9 ms; calibration 1 + 2 + 4; samples 5 x 4
    assert clock.calls == 10 + 7 + 20
    assert m.warnings == []


def test_spread_warning():
    m = Measurement("x", (1.0, 1.0, 2.0, 3.0), calls_per_sample=1, threads=1)
    assert m.relative_spread > 0.1 and "IQR" in m.warnings[0]


def test_slow_function_gets_one_call_per_sample():
    clock = FakeClock(5e-3)
    assert measure(clock.work, n_samples=3, clock=clock).calls_per_sample == 1


def test_threads_are_set_and_restored():
    before = torch.get_num_threads()
    seen = []
    measure(lambda: seen.append(torch.get_num_threads()), n_samples=1, threads=2, warmup_s=0, min_sample_s=1e-9)
    assert set(seen) == {2}
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError):
        with torch_threads(0):
            pass


@pytest.mark.gpu
def test_cuda_event_timing():
    a = torch.randn(1024, 1024, device="cuda")
    m = measure(lambda: a @ a, n_samples=5, cuda_events=True)
    assert m.median_ms > 0 and m.calls_per_sample >= 1
