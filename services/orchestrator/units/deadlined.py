"""A unit's stub whose unary calls carry the unit-call deadline: the deadline is set here, once."""

from services.orchestrator.units.channels import UNARY_DEADLINE_S


class DeadlinedStub:
    """Calls `stub.Method(request)` with `timeout=UNARY_DEADLINE_S` for every method of the stub.

    Gateways derive from it and add what needs more than one call (batches, caches); handlers call
    the unit's methods on a gateway and never see a deadline or a raw stub.
    """

    def __init__(self, stub, deadline_s: float = UNARY_DEADLINE_S):
        self._stub = stub
        self._deadline_s = deadline_s

    def __getattr__(self, method_name: str):
        method = getattr(self._stub, method_name)
        deadline_s = self._deadline_s

        def call(request):
            return method(request, timeout=deadline_s)

        call.__name__ = method_name
        return call
