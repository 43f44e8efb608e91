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
