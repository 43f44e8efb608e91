import pytest

from controller import validation
from controller.csm.model import Customer
from controller.csm.rules import Refused, check_customer


@pytest.mark.parametrize("text, expected", [
    ("00:00:00:00:00:0A", "00:00:00:00:00:0a"), ("02:42:ac:11:00:02", "02:42:ac:11:00:02")])
def test_macs_are_canonical(text, expected):
    assert validation.mac_address("host", text) == expected


@pytest.mark.parametrize("text, words", [
    ("00:00:00:00:00:0g", "not a MAC address"), ("00:00:00:00:00", "not a MAC address"),
    ("0000.0000.0001", "not a MAC address"), (" 00:00:00:00:00:01", "not a MAC address"),
    ("ff:ff:ff:ff:ff:ff", "group"), ("01:00:5e:00:00:01", "group"), (7, "not a MAC address"),
    ("x" * 500, "..."),
])
def test_bad_macs_say_what_was_expected(text, words):
    with pytest.raises(ValueError, match=words) as err:
        validation.mac_address("host", text)
    assert len(str(err.value)) < 200  # the offending value is truncated


def test_a_customer_with_a_mistyped_mac_is_refused_naming_the_device():
    with pytest.raises(Refused) as refused:
        check_customer(Customer("c1", "C1", hosts=("00:00:00:00:00:01", "00:00:00:00:0:02")))
    assert refused.value.code == "INVALID_ARGUMENT" and "hosts[1]" in refused.value.message
    with pytest.raises(Refused, match="twice"):
        check_customer(Customer("c1", "C1", hosts=("00:00:00:00:00:01",) * 2))
