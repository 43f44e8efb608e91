"""SlaService, SlsService and ReportService servicers: protobuf in, one CustomerService call,
protobuf out (shell).

Authorization, audit, the rules and the store are the core's (controller.csm.service);
conversions are in controller.api.convert.
"""

from cems.v1 import customer_pb2 as pb

from controller.api import convert
from controller.api.auth import GatedServicer
from controller.csm.service import CustomerService, Gate


class SlaServicer(GatedServicer):
    """Domain manager: customers, SLAs (with admission control) and tokens."""

    def __init__(self, gate: Gate, customers: CustomerService):
        super().__init__(gate)
        self.customers = customers

    def CreateCustomer(self, request, context):
        customer = convert.customer_from_pb(request.customer)

        def work(_customer_id):
            sla = convert.sla_from_pb(request.sla, customer.customer_id)
            state = self.customers.create_customer(customer, sla)
            return pb.CreateCustomerResponse(customer=convert.customer_pb(state.customer),
                                             sla=convert.sla_pb(sla),
                                             sls=convert.sls_pb(state.sls))
        return self._run(context, "manage", customer.customer_id, work)

    def GetCustomer(self, request, context):
        def work(customer_id):
            customer, sla, sls = self.customers.customer(customer_id)
            return pb.GetCustomerResponse(customer=convert.customer_pb(customer),
                                          sla=convert.sla_pb(sla), sls=convert.sls_pb(sls))
        return self._run(context, "manage", request.customer_id, work)

    def ListCustomers(self, request, context):
        def work(_customer_id):
            customers, total = self.customers.customers(request.offset, request.limit)
            return pb.ListCustomersResponse(customers=[convert.customer_pb(c) for c in customers],
                                            total=total)
        return self._run(context, "manage", "", work)

    def UpdateSla(self, request, context):
        def work(customer_id):
            sla = convert.sla_from_pb(request.sla, customer_id)
            sls = self.customers.update_sla(sla)
            return pb.UpdateSlaResponse(sla=convert.sla_pb(sla), sls=convert.sls_pb(sls))
        return self._run(context, "manage", request.sla.customer_id, work)

    def DeleteCustomer(self, request, context):
        def work(customer_id):
            self.customers.delete_customer(customer_id)
            return pb.DeleteCustomerResponse()
        return self._run(context, "manage", request.customer_id, work)

    def CreateToken(self, request, context):
        def work(customer_id):
            token_id, token = self.customers.create_token(
                convert.role_of(request.role), customer_id, request.probe_id,
                request.expires_unix_s or None)
            return pb.CreateTokenResponse(token_id=token_id, token=token)
        return self._run(context, "manage", request.customer_id, work)

    def ListTokens(self, request, context):
        return self._run(context, "manage", "", lambda _c: pb.ListTokensResponse(
            tokens=[convert.token_pb(t) for t in self.customers.tokens()]))

    def RevokeToken(self, request, context):
        def work(_customer_id):
            self.customers.revoke_token(request.token_id)
            return pb.RevokeTokenResponse()
        return self._run(context, "manage", "", work)


class SlsServicer(GatedServicer):
    """Customers and peer domains: their own SLA and SLS (a domain manager names one)."""

    def __init__(self, gate: Gate, customers: CustomerService):
        super().__init__(gate)
        self.customers = customers

    def GetSla(self, request, context):
        return self._run(context, "read_sla", request.customer_id, lambda customer_id:
                         pb.GetSlaResponse(sla=convert.sla_pb(self.customers.sla(customer_id))),
                         own=True)

    def GetSls(self, request, context):
        return self._run(context, "read_sls", request.customer_id, lambda customer_id:
                         pb.GetSlsResponse(sls=convert.sls_pb(self.customers.sls(customer_id))),
                         own=True)

    def ChangeSls(self, request, context):
        def work(customer_id):
            sls, next_allowed = self.customers.change_sls(
                customer_id, convert.service_class_of(request.service_class), request.rate_bps)
            return pb.ChangeSlsResponse(sls=convert.sls_pb(sls),
                                        next_change_allowed_unix_s=next_allowed)
        return self._run(context, "change_sls", request.customer_id, work, own=True)


class ReportServicer(GatedServicer):
    """Per-customer reports for the period asked (default: this month so far)."""

    def __init__(self, gate: Gate, customers: CustomerService):
        super().__init__(gate)
        self.customers = customers

    def GetReport(self, request, context):
        return self._run(context, "read_report", request.customer_id, lambda customer_id:
                         convert.report_pb(self.customers.report(
                             customer_id, request.start_unix_s, request.end_unix_s)), own=True)
