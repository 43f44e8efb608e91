import math

import pytest

from controller.csm.model import ClassBounds, ServiceClass, Sla, Sls
from controller.csm.report import (MeterReading, combined_availability, compute_report,
                                   uptime_fraction)

H = 3600.0
G, S, B = ServiceClass.GOLD, ServiceClass.SILVER, ServiceClass.BRONZE


def test_uptime_from_events():
    events = [(0.0, True), (100.0, False), (130.0, True)]
    assert uptime_fraction(events, 50.0, 250.0) == pytest.approx(170 / 200)
    assert uptime_fraction(events, 200.0, 300.0) == 1.0       # state carried from before
    assert uptime_fraction([(500.0, True)], 0.0, 1000.0) == 1.0  # only the known part counts
    assert uptime_fraction([(500.0, True), (750.0, False)], 0.0, 1000.0) == 0.5
    assert uptime_fraction([], 0.0, 10.0) is None
    assert combined_availability([(0.0, True)], [(0.0, True), (50.0, False)], 0, 100) == 0.5
    assert combined_availability([], [], 0, 100) is None


def test_report_hours_charges_availability_and_meter():
    sla = Sla("c1", "gsb-economy", {B: ClassBounds(2_000_000, 4_000_000),
                                    S: ClassBounds(2_000_000, 8_000_000)},
              availability_target=0.999)
    history = [Sls("c1", B, 2_000_000, 0.0, "system"), Sls("c1", S, 8_000_000, 10 * H),
               Sls("c1", B, 2_000_000, 17 * H)]
    meter = MeterReading(packets_in=1000, bytes_in=1_000_000, dropped_packets=50,
                         dropped_bytes=50_000, bytes_in_per_second=1200.0,
                         dropped_bytes_per_second=200.0)
    report = compute_report(sla, history, 0.0, 24 * H, availability=0.9995, meter=meter)
    assert report.hours == {G: 0.0, S: 7.0, B: 17.0}
    assert report.charges[S] == 2.0 and report.total_charge == 2.0  # 5 Silver hours included
    assert report.availability_met is True
    assert report.throughput_bps == 8000.0 and report.policed_ratio == 0.05
    assert report.delay_ms is None and any("probe" in u for u in report.unknown)
    assert report.target.source.startswith("ITU-T Y.1541") and report.target.loss_ratio is None


def test_report_without_measurements_says_so():
    sla = Sla("c1", "gsb-business", {S: ClassBounds(1, 2)})
    report = compute_report(sla, [Sls("c1", S, 1, 0.0)], 0.0, H, availability=None, meter=None)
    assert report.availability is None and report.availability_met is None
    assert report.throughput_bps is None
    assert len(report.unknown) == 3
    meter = MeterReading(0, 0, 0, 0, math.nan, math.nan)
    assert compute_report(sla, [Sls("c1", S, 1, 0.0)], 0, H, None, meter).policed_ratio is None
    with pytest.raises(ValueError, match="must end after"):
        compute_report(sla, [Sls("c1", S, 1, 0.0)], H, 0.0, None, None)


def test_throughput_and_policed_share_are_over_the_period_between_meter_readings():
    from controller.csm.report import MeterReading, meter_figures
    then = MeterReading(1_000, 1_000_000, 100, 100_000, time_unix_s=1000.0)
    now = MeterReading(11_000, 11_000_000, 1_100, 1_100_000, 5e6, 0.0, time_unix_s=2000.0)
    throughput, policed, since, why = meter_figures(now, then)
    assert throughput == (10_000_000 - 1_000_000) * 8 / 1000 and policed == 0.1
    assert since == 1000.0 and why == ""
    recreated = MeterReading(10, 10_000, 0, 0, 8000.0, 0.0, time_unix_s=2000.0)
    throughput, policed, since, why = meter_figures(recreated, then)  # counters went back
    assert throughput == 64_000 and since is None and "latest rate" in why
