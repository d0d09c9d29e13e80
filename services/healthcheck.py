"""Asks a server's grpc.health.v1 service whether it is SERVING: python -m services.healthcheck HOST:PORT.

Exit status 0 when SERVING, 1 otherwise; what compose health checks and the launcher use.
"""

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.deadlines import HEALTH_CHECK_SECONDS


def status(address: str, service: str = "", timeout: float = HEALTH_CHECK_SECONDS) -> str:
    """The health status name ("SERVING", "NOT_SERVING", ...), or the gRPC error code's name."""
    with grpc.insecure_channel(address) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as error:
            return error.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


def is_serving(address: str, service: str = "", timeout: float = HEALTH_CHECK_SECONDS) -> bool:
    return status(address, service, timeout) == "SERVING"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not 1 <= len(args) <= 2:
        print("usage: python -m services.healthcheck HOST:PORT [SERVICE]", file=sys.stderr)
        return 2
    answer = status(*args)
    print(answer)
    return 0 if answer == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
