"""The short fuzz run inside make test (the full one is `make fuzz`)."""

from tests.fuzz.fuzz import fuzz_captures, fuzz_frames, fuzz_grpc


def test_malformed_and_extreme_grpc_requests_get_clear_statuses():
    report = fuzz_grpc(1500)
    assert report.sent > 1000 and report.failures == [], report.text()


def test_mutated_frames_never_crash_the_probe():
    report = fuzz_frames(30_000)
    assert report.sent == 30_000 and report.failures == [], report.text()


def test_corrupted_captures_end_with_records_or_one_clear_line():
    report = fuzz_captures(7, seed=7)
    assert report.sent == 7 and report.failures == [], report.text()
