"""A real gRPC server of cems for unit tests: a real store, a domain manager's token, and a
channel that carries it. Stop it with close()."""

from client.channel import connect
from controller.api.server import serve_grpc
from controller.config import Address
from controller.csm.model import Role
from controller.csm.store import CsmStore
from controller.store import Store


class Served:
    def __init__(self, state, port: int = 0, csm: CsmStore | None = None, **options):
        self.own_store = csm is None
        self.csm = csm if csm is not None else CsmStore(Store(":memory:"))
        self.server, self.port = serve_grpc(state, Address("127.0.0.1", port), csm=self.csm,
                                            **options)
        self.address = f"127.0.0.1:{self.port}"
        self.manager = self.token(Role.DOMAIN_MANAGER)
        self.channel = connect(self.address, self.manager)

    def token(self, role: Role, subject: str = "") -> str:
        """A token of `role`; `subject` is the customer id, or the probe id of a probe."""
        if role == Role.PROBE:
            return self.csm.create_token(role, probe_id=subject)[1]
        return self.csm.create_token(role, subject)[1]

    def connect(self, token: str):
        return connect(self.address, token)

    def close(self) -> None:
        self.channel.close()
        self.server.stop(0)
        if self.own_store:
            self.csm.store.close()
