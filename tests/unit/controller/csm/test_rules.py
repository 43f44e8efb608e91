import pytest

from controller.csm.model import ClassBounds, Principal, Role, ServiceClass, Sla, Sls
from controller.csm.rules import (LinkLoad, Refused, authorize, charges, check_admission,
                                  check_sla, check_sls_change, committed_bps, hours_per_class,
                                  initial_sls)

G, S, B = ServiceClass.GOLD, ServiceClass.SILVER, ServiceClass.BRONZE
M = 1_000_000


def business(**kw) -> Sla:
    bounds = {G: ClassBounds(2 * M, 8 * M), S: ClassBounds(2 * M, 10 * M),
              B: ClassBounds(1 * M, 20 * M)}
    return Sla("c1", "gsb-business", kw.pop("bounds", bounds), **kw)


def test_initial_sls_is_the_variant_default_at_its_minimum():
    assert initial_sls(business(), 100.0) == Sls("c1", S, 2 * M, 100.0, "system")
    economy = Sla("c2", "gsb-economy", {B: ClassBounds(M, 4 * M)})
    assert initial_sls(economy, 5.0).service_class is B


def test_sls_change_within_bounds_class_and_interval():
    sla = business(min_change_interval_s=60)
    last = 1000.0  # the customer's last change
    assert check_sls_change(sla, last, G, 8 * M, 1060.0) == Sls("c1", G, 8 * M, 1060.0)
    assert check_sls_change(sla, None, G, 8 * M, 1001.0).rate_bps == 8 * M  # never changed
    with pytest.raises(Refused) as err:
        check_sls_change(sla, last, G, 9 * M, 1100.0)
    assert err.value.code == "INVALID_ARGUMENT" and "outside your gold bounds 2 Mbit/s to 8" \
        in err.value.message
    with pytest.raises(Refused) as err:
        check_sls_change(sla, last, G, 4 * M, 1030.0)
    assert err.value.code == "RESOURCE_EXHAUSTED" and err.value.retry_after_unix_s == 1060.0
    assert "in 30 s" in err.value.message
    economy = Sla("c2", "gsb-economy", {B: ClassBounds(M, 4 * M), S: ClassBounds(M, 4 * M)})
    with pytest.raises(Refused, match="class gold is not in your SLA; allowed: silver, bronze"):
        check_sls_change(economy, None, G, 2 * M, 0.0)


def test_sla_checks_access_speed_and_consistency():
    check_sla(business(), access_speed_bps=20 * M)
    with pytest.raises(Refused) as err:
        check_sla(business(), access_speed_bps=10 * M)
    assert err.value.code == "FAILED_PRECONDITION"
    assert "bronze maximum 20 Mbit/s is above the customer's access link speed 10 Mbit/s by 10" \
        in err.value.message
    with pytest.raises(Refused, match="starts customers in silver"):
        check_sla(business(bounds={G: ClassBounds(M, 2 * M)}), 20 * M)
    with pytest.raises(Refused, match="0 < min"):
        check_sla(business(bounds={S: ClassBounds(3 * M, 2 * M)}), 20 * M)
    with pytest.raises(Refused, match="variant"):
        check_sla(Sla("c", "gold-plated", {S: ClassBounds(M, M)}), 20 * M)


def test_admission_arithmetic():
    sla = business()
    assert committed_bps(sla) == 10 * M  # the larger of the Gold and Silver maxima
    path = [LinkLoad("s5->s3", 100 * M, 85 * M), LinkLoad("s3->s2", 1000 * M, 85 * M)]
    check_admission(sla, path)  # 95 of 100
    crowded = [LinkLoad("s5->s3", 100 * M, 95 * M)]
    with pytest.raises(Refused) as err:
        check_admission(sla, crowded)
    assert err.value.message == ("link s5->s3: Gold/Silver committed would be 105 Mbit/s, above "
                                 "its capacity 100 Mbit/s by 5 Mbit/s")
    check_admission(sla, crowded, replacing=business())  # replacing itself adds nothing
    bronze_only = Sla("c", "gsb-economy", {B: ClassBounds(M, 50 * M)})
    check_admission(bronze_only, crowded)


def test_who_may_do_what():
    manager = Principal(Role.DOMAIN_MANAGER, "", "t0")
    alice = Principal(Role.CUSTOMER, "alice", "t1")
    peer = Principal(Role.PEER_DOMAIN, "isp-b", "t2")
    authorize(manager, "manage", "alice")
    authorize(manager, "read_sls", "alice")
    authorize(alice, "change_sls", "alice")
    authorize(peer, "change_sls", "isp-b")
    for principal, action, customer in ((alice, "change_sls", "bob"), (alice, "manage", "alice"),
                                        (manager, "change_sls", "alice"),
                                        (peer, "read_sla", "alice")):
        with pytest.raises(Refused) as err:
            authorize(principal, action, customer)
        assert err.value.code == "PERMISSION_DENIED"
    with pytest.raises(Refused) as err:
        authorize(None, "read_sls", "alice")
    assert err.value.code == "UNAUTHENTICATED"


def test_hours_and_charges():
    hour = 3600.0
    history = [Sls("c", S, M, 0.0), Sls("c", G, M, 10 * hour), Sls("c", S, M, 23 * hour)]
    hours = hours_per_class(history, 0.0, 30 * hour)
    assert hours == {G: 13.0, S: 17.0, B: 0.0}
    # GSB business: 10 Gold hours included, then 2 per hour.
    assert charges("gsb-business", hours) == {G: 6.0, S: 0.0, B: 0.0}
    # GSB economy: 5 Silver hours included then 1 per hour; Gold 5 per hour from the first.
    assert charges("gsb-economy", hours) == {G: 65.0, S: 12.0, B: 0.0}
    # A period starting mid-way counts only its own part.
    assert hours_per_class(history, 12 * hour, 20 * hour)[G] == 8.0
