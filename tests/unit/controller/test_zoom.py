from controller.monitor.zoom import ZoomBook


def test_a_degraded_customer_is_zoomed_in_on_until_it_has_recovered_for_a_while():
    book = ZoomBook(recover_s=30.0)
    (start,) = book.tick(0.0, {("c1", "voice"): "degraded", ("c2", "voice"): "ok"})
    assert start.active and start.zoom.customer_id == "c1" and "voice degraded" in start.reason
    assert book.tick(5.0, {("c1", "voice"): "degraded"}) == []  # once
    assert book.tick(10.0, {("c1", "voice"): "ok"}) == []       # recovering
    assert book.tick(35.0, {("c1", "voice"): "ok"}) == []
    (end,) = book.tick(40.0, {("c1", "voice"): "ok"})
    assert not end.active and "no service degraded for 30 s" in end.reason
    assert book.active() == {}


def test_an_asked_zoom_ends_after_its_time_and_zooms_are_bounded():
    book = ZoomBook(max_zooms=2)
    zoom, events = book.request("c1", "operator", 60.0, 0.0)
    assert zoom.asked and events[0].active
    assert book.tick(59.0, {}) == []
    (end,) = book.tick(60.0, {})
    assert not end.active and end.reason == "its time is up"
    book.request("a", "", None, 0.0)
    book.request("b", "", None, 0.0)
    zoom, events = book.request("c", "", None, 0.0)
    assert zoom is None and events == [] and book.refused_total == 1
