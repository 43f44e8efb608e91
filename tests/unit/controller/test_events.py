from controller.events import EventBus


def test_slow_watcher_loses_oldest_and_counts_it():
    bus = EventBus(maxsize=3)
    slow, other = bus.subscribe(), bus.subscribe()
    for i in range(5):
        bus.publish(i)
    assert [slow.get(0), slow.get(0), slow.get(0), slow.get(0)] == [2, 3, 4, None]
    assert slow.lost == 2
    slow.close()
    bus.publish(5)
    assert len(bus) == 1 and other.get(0) == 3 and other.lost == 3


def test_a_slow_watcher_holds_at_most_its_share_of_flows():
    from controller.events import FlowRates
    bus = EventBus(maxsize=1000, max_items=250)
    slow = bus.subscribe()
    for i in range(10):
        bus.publish(FlowRates(float(i), 1, tuple(range(100))))  # 100 flows each
    kept = [slow.get(0) for _ in range(3)]
    assert [e.time_unix_s for e in kept[:2]] == [8.0, 9.0] and kept[2] is None
    assert slow.lost == 8
