"""The framework door loads lazily, and still in an order the framework accepts."""

import subprocess
import sys


def test_the_config_knows_the_openflow_options_before_any_app_is_loaded():
    code = ("from controller import compat\n"
            "compat.cfg.CONF(args=['--ofp-listen-host', '127.0.0.1', '--ofp-tcp-listen-port',"
            " '16653'], project=compat.RUNTIME)\n"
            "print(compat.cfg.CONF.ofp_listen_host, compat.cfg.CONF.ofp_tcp_listen_port)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["127.0.0.1", "16653"]


def test_a_name_the_door_does_not_have_is_an_attribute_error():
    from controller import compat
    try:
        compat.no_such_thing  # noqa: B018
    except AttributeError as err:
        assert "no_such_thing" in str(err)
    else:
        raise AssertionError("expected AttributeError")
