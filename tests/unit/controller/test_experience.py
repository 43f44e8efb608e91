"""Statuses per customer and service change only on a sustained window, never on one sample."""

import math

from controller.monitor.experience import DEGRADED, OK, UNKNOWN, ExperienceBook
from controller.monitor.quality import Quality


def q(score):
    return Quality("voice", score, "MOS", "test")


def feed(book, scores, start, customer="c1", service="voice", service_class="gold",
         segment="soho"):
    for i, score in enumerate(scores):
        book.add(customer, service, q(score), start + i, 1.0, service_class, segment)
    return start + len(scores)


def test_one_bad_sample_changes_nothing_a_sustained_fall_does_and_recovery_needs_margin():
    book = ExperienceBook()
    now = feed(book, [4.4] * 10, 0.0)
    assert [c.after.status for c in book.evaluate(now)] == [OK]
    now = feed(book, [1.2] + [4.4] * 9, now)  # one sample far below: the mean stays up
    assert book.evaluate(now) == []
    now = feed(book, [3.5] * 10, now)          # ten seconds below Gold's 4.03
    (change,) = book.evaluate(now)
    assert (change.before, change.after.status) == (OK, DEGRADED)
    assert "below the target 4.03" in change.after.reason
    now = feed(book, [4.05] * 10, now)         # above the target, not by the margin
    assert book.evaluate(now) == []
    now = feed(book, [4.2] * 10, now)
    assert [c.after.status for c in book.evaluate(now)] == [OK]


def test_unknown_without_known_quality_and_bronze_has_its_own_target():
    book = ExperienceBook()
    now = feed(book, [math.nan] * 5, 0.0, service_class="bronze")
    assert book.evaluate(now) == []  # unknown from the start: no change
    now = feed(book, [3.8] * 10, now, service_class="bronze")  # above Bronze's 3.60
    assert [c.after.status for c in book.evaluate(now)] == [OK]
    changes = book.evaluate(now + 61)  # nothing for a whole horizon
    assert [c.after.status for c in changes] == [UNKNOWN]


def test_windows_and_lists_worst_first():
    book = ExperienceBook()
    now = feed(book, [4.4] * 20, 0.0, customer="good")
    feed(book, [2.0] * 20, 0.0, customer="bad")
    feed(book, [3.9] * 20, 0.0, customer="meh")
    book.evaluate(now)
    (view,) = book.of_customer("bad", now)
    ten = next(w for w in view.windows if w.window_s == 10.0)
    assert ten.count == 10 and ten.mean == 2.0 and ten.time_below_s == 10.0
    assert [v.customer_id for v in book.select(now)] == ["bad", "meh", "good"]
    assert [v.customer_id for v in book.select(now, statuses=[OK])] == ["good"]


def test_summary_per_service_class_and_segment_counts_statuses_and_customers_below_target():
    book = ExperienceBook()
    now = feed(book, [4.4] * 20, 0.0, customer="a", segment="residential")
    feed(book, [2.0] * 20, 0.0, customer="b", segment="residential")
    feed(book, [math.nan] * 20, 0.0, customer="c", segment="residential")
    feed(book, [3.8] * 20, 0.0, customer="d", service_class="bronze", segment="residential")
    feed(book, [3.0] * 20, 0.0, customer="e", segment="business")
    book.evaluate(now)
    groups = {(g.service, g.service_class, g.segment): g for g in book.summary(now)}
    assert set(groups) == {("voice", "gold", "residential"), ("voice", "bronze", "residential"),
                           ("voice", "gold", "business")}
    gold = groups[("voice", "gold", "residential")]
    assert gold.statuses == {OK: 1, DEGRADED: 1, UNKNOWN: 1}
    assert gold.below_target == 1 and gold.target == 4.03   # b; c has no known score
    # the last 10 s of a's and b's samples: ten at 4.4, ten at 2.0, c's ten unknown
    assert (gold.figures.count, gold.figures.unknown) == (20, 10)
    assert math.isclose(gold.figures.mean, 3.2) and gold.figures.worst == 2.0
    assert gold.figures.time_below_s == 10.0
    bronze = groups[("voice", "bronze", "residential")]
    assert bronze.below_target == 0 and bronze.statuses[OK] == 1  # 3.8 is above Bronze's 3.6
    assert groups[("voice", "gold", "business")].below_target == 1
    assert book.summary(now + 100)[0].figures.count == 0  # nothing in the window: no figures


def test_an_hour_of_history_minute_by_minute_and_no_more():
    book = ExperienceBook()
    for minute in range(70):               # 70 minutes, one sample every 20 s
        for second in (0, 20, 40):
            score = 4.4 if minute % 2 else (2.0 if second == 0 else 4.0)
            book.add("c1", "voice", q(score), minute * 60.0 + second, 20.0, "gold")
        book.add("c1", "voice", q(math.nan), minute * 60.0 + 50, 10.0, "gold")  # unknown
    now = 70 * 60.0
    points = book.history("c1", "voice", now)
    assert len(points) == 60 and points[0].start_unix_s == 10 * 60.0
    even, odd = points[0], points[1]       # minute 10 (even) and 11
    assert (even.samples, even.mean, even.worst) == (3, (2.0 + 4.0 + 4.0) / 3, 2.0)
    assert (odd.samples, odd.mean, odd.worst) == (3, 4.4, 4.4)
    assert [p.start_unix_s for p in book.history("c1", "voice", now, span_s=300)] == \
        [m * 60.0 for m in range(64, 70)]
    assert book.history("c1", "iptv", now) == () and book.history("c2", "voice", now) == ()
    # a clock that goes back adds to the newest minute
    book.add("c1", "voice", q(1.0), 5.0, 1.0, "gold")
    assert book.history("c1", "voice", now)[-1].worst == 1.0


def test_a_replayed_sample_older_than_the_pairs_latest_is_not_added():
    """The stream replays a partition just taken; a pair that already has samples from a
    later time (a session report, say) keeps them and does not take older ones after."""
    book = ExperienceBook()
    now = feed(book, [2.0] * 10, 100.0)   # 100 .. 109
    for second in range(101, 106):        # older than the pair's latest: not added
        book.add_samples(second, [("c1", "voice", 4.4, 1.0, "gold", "soho", q(4.4))],
                         replayed=True)
    book.evaluate(now)
    (view,) = book.of_customer("c1", now)
    ten = next(w for w in view.windows if w.window_s == 10.0)
    assert (ten.count, ten.mean) == (10, 2.0)
