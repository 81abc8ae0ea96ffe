"""Admission control: a queue bound that follows the SLO and the measured service time."""

from __future__ import annotations

import random

import pytest

from turborec.serving.admission import AdmissionController, AdmissionPolicy, ServiceTimeModel


def test_service_time_model_learns_fixed_and_per_item_cost() -> None:
    m = ServiceTimeModel(smoothing=0.02)
    rnd = random.Random(0)
    for _ in range(3000):
        size = rnd.randint(1, 64)
        m.observe(size, (0.002 + 0.0001 * size) * rnd.uniform(0.9, 1.1))
    assert m.fixed_s == pytest.approx(0.002, rel=0.25)
    assert m.per_item_s == pytest.approx(0.0001, rel=0.25)
    assert m.predict(32) == pytest.approx(0.0052, rel=0.1)


def test_service_time_model_follows_a_change() -> None:
    m = ServiceTimeModel(smoothing=0.05)
    for i in range(500):
        m.observe(1 + i % 16, 0.001 * (1 + i % 16))
    slow_before = m.predict(16)
    for i in range(500):
        m.observe(1 + i % 16, 0.004 * (1 + i % 16))  # the machine got 4x slower
    assert m.predict(16) > 3 * slow_before


def test_constant_batch_size_still_predicts_its_duration() -> None:
    m = ServiceTimeModel()
    for _ in range(50):
        m.observe(8, 0.004)
    assert m.predict(8) == pytest.approx(0.004, rel=0.01)
    assert m.fixed_s >= 0 and m.per_item_s >= 0


def test_ignores_nonsense_observations() -> None:
    m = ServiceTimeModel()
    before = m.predict(4)
    m.observe(0, 1.0)
    m.observe(4, float("nan"))
    m.observe(4, -1.0)
    assert m.predict(4) == before


def controller(fixed: float, per_item: float, budget: float = 0.010, max_batch: int = 16) -> AdmissionController:
    st = ServiceTimeModel(prior_fixed_s=fixed, prior_per_item_s=per_item)
    return AdmissionController(AdmissionPolicy(budget_s=budget, shed_at=0.8, max_batch=max_batch), st)


def test_admits_an_empty_queue_and_sheds_past_the_budget() -> None:
    c = controller(fixed=0.001, per_item=0.0001)
    assert c.admit(0, 0.0).admitted
    far = c.admit(1000, 0.0)
    assert not far.admitted and far.retry_after_s > 0 and far.expected_s > 0.008


def test_queue_bound_comes_from_the_budget() -> None:
    # a full batch of 16 takes 1 + 1.6 = 2.6 ms; 8 ms allowed -> about 3 batches' worth of queue
    c = controller(fixed=0.001, per_item=0.0001)
    bound = c.max_queue()
    assert 40 <= bound <= 64
    assert c.admit(bound - 1, 0.0).admitted
    assert not c.admit(bound, 0.0).admitted
    # a tighter budget or a slower model means a shorter queue
    assert controller(0.001, 0.0001, budget=0.005).max_queue() < bound
    assert controller(0.002, 0.0002).max_queue() < bound


def test_busy_model_and_wait_window_count() -> None:
    c = controller(fixed=0.001, per_item=0.0001)
    assert c.admit(0, 0.0).admitted
    assert not c.admit(0, busy_for_s=0.009).admitted
    assert c.expected_latency(0, 0.0, wait_window_s=0.001) == pytest.approx(c.expected_latency(0, 0.0) + 0.001)


def test_model_slower_than_the_budget_sheds_everything() -> None:
    c = controller(fixed=0.020, per_item=0.0)
    assert c.max_queue() == 0
    assert not c.admit(0, 0.0).admitted
