"""Prometheus shows everybody's experience in a bounded number of series, and VIPs by name."""

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from controller import metrics
from controller.csm.model import Customer, CustomerState, ServiceClass, Sls
from controller.metrics import ExperienceCollector
from controller.monitor.directory import CustomerDirectory
from controller.monitor.engine import Experience, ExperienceEngine
from controller.monitor.experience import ExperienceBook
from controller.monitor.quality import Quality
from controller.monitor.zoom import ZoomBook


def scrape(experience, directory, now):
    registry = CollectorRegistry()
    registry.register(ExperienceCollector(experience, directory, clock=lambda: now))
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(generate_latest(registry).decode())
            for s in family.samples}


def build(customers):
    book = ExperienceBook()
    directory = CustomerDirectory()
    for number, (customer, vip, score) in enumerate(customers, start=1):
        directory.set_state(customer, CustomerState(
            Customer(customer, customer.upper(), vip=vip),
            Sls(customer, ServiceClass.GOLD, 10_000_000, 0.0), number))
        for t in range(20):
            book.add(customer, "voice", Quality("voice", score, "MOS", "test"), float(t), 1.0,
                     "gold", "residential")
    book.evaluate(20.0)
    return Experience(book, None, ExperienceEngine(book, ZoomBook(), None, directory)), directory


def test_series_stay_bounded_per_group_and_only_vips_have_their_own():
    customers = [(f"c{i}", False, 4.4 if i % 4 else 2.0) for i in range(400)]
    customers += [("boss", True, 2.5), ("chair", True, 4.4)]
    experience, directory = build(customers)
    samples = scrape(experience, directory, 20.0)
    group = (("segment", "residential"), ("service", "voice"), ("service_class", "gold"))
    assert samples[("cems_experience_pairs", group + (("status", "degraded"),))] == 101
    assert samples[("cems_experience_pairs", group + (("status", "ok"),))] == 301
    assert samples[("cems_experience_below_target", group)] == 101
    assert samples[("cems_experience_target", group)] == 4.03
    assert samples[("cems_experience_score", group + (("stat", "worst"),))] == 2.0
    vip = {key: value for key, value in samples.items() if key[0].startswith("cems_experience_vip")}
    assert vip == {
        ("cems_experience_vip_score", (("customer", "boss"), ("service", "voice"))): 2.5,
        ("cems_experience_vip_score", (("customer", "chair"), ("service", "voice"))): 4.4,
        ("cems_experience_vip_degraded", (("customer", "boss"), ("service", "voice"))): 1.0,
        ("cems_experience_vip_degraded", (("customer", "chair"), ("service", "voice"))): 0.0,
        ("cems_experience_vip_left_out", ()): 0.0}
    # 402 customers, and fewer than 20 series: none of them names an ordinary customer
    assert len(samples) < 20 and not any("c1" in str(key) for key in samples)


def test_vips_beyond_the_bound_are_counted_not_shown(monkeypatch):
    monkeypatch.setattr(metrics, "MAX_VIP_SERIES", 2)
    experience, directory = build([(f"v{i}", True, 4.4) for i in range(5)])
    samples = scrape(experience, directory, 20.0)
    shown = {dict(key[1])["customer"] for key in samples
             if key[0] == "cems_experience_vip_score"}
    assert shown == {"v0", "v1"}
    assert samples[("cems_experience_vip_left_out", ())] == 3
