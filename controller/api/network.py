"""NetworkService servicer: changes to what the controller has learned (shell).

Domain managers only, audited. The change itself is the app's: the servicer checks the
request, then hands the host to forget to the event thread (`forget`).
"""

from cems.v1 import status_pb2 as pb

from controller import validation
from controller.api.auth import GatedServicer
from controller.csm import rules


class NetworkServicer(GatedServicer):
    def __init__(self, gate, state, forget):
        super().__init__(gate)
        self.state = state
        self.forget = forget  # forget(mac): posted to the app's event thread

    def ForgetHost(self, request, context):
        def work(_customer_id):
            try:
                mac = validation.mac_address("mac", request.mac)
            except ValueError as err:
                raise rules.Refused("INVALID_ARGUMENT", str(err)) from None
            if all(host.mac != mac for host in self.state.topology.hosts):
                raise rules.Refused("NOT_FOUND", f"no host {mac} is known")
            self.forget(mac)
            return pb.ForgetHostResponse()
        return self._run(context, "manage", "", work)
