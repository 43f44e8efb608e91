"""Run cems on Ryu 4.34 under Python 3.11 (shell).

Ryu's manager imports eventlet.wsgi.ALREADY_HANDLED, which eventlet releases that run on
Python 3.11 no longer have; this sets it before Ryu is imported, then hands over to Ryu's
own manager. Arguments are ryu-manager's; the cems config comes from $CEMS_CONFIG:

    CEMS_CONFIG=cems.toml python -m controller.ryu_launcher \\
        --ofp-listen-host 127.0.0.1 --ofp-tcp-listen-port 6653 controller.app

Ryu's manager monkey-patches threading with eventlet (hub.patch(thread=True)) unless it is
given --enable-debugger; with patched threading the gRPC server accepts connections but never
answers. The launcher therefore always passes --enable-debugger: Ryu's own sockets are green
already, and cems' timer uses hub.sleep, so nothing else needs the patching.
"""

import os
import sys


def main() -> int:
    os.environ.setdefault("CEMS_OPENFLOW_RUNTIME", "ryu")
    import eventlet.wsgi  # pylint: disable=import-outside-toplevel
    if not hasattr(eventlet.wsgi, "ALREADY_HANDLED"):
        eventlet.wsgi.ALREADY_HANDLED = object()
    # gRPC must start before Ryu's manager monkey-patches the standard library.
    from controller.runtime import build_runtime_from_environment, offer_runtime  # pylint: disable=import-outside-toplevel
    offer_runtime(build_runtime_from_environment())
    from ryu.cmd import manager  # pylint: disable=import-outside-toplevel
    args = sys.argv[1:]
    if "--enable-debugger" not in args:
        args = ["--enable-debugger"] + args
    return manager.main(args=args)


if __name__ == "__main__":
    sys.exit(main())
