"""A plain gRPC client, in Python with grpcio, of the health service that
the chapter "Flight next to other gRPC services" serves beside Flight.

Usage: health_client.py HOST:PORT

Prints one line per service asked about: the serving status, or the gRPC
status code when the server does not know the service.
"""

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main():
    with grpc.insecure_channel(sys.argv[1]) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ["", "arrow.flight.protocol.FlightService", "no.such.Service"]:
            request = health_pb2.HealthCheckRequest(service=service)
            try:
                response = stub.Check(request, timeout=10)
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
                print(f"{service!r}: {status}")
            except grpc.RpcError as error:
                print(f"{service!r}: {error.code().name}")


if __name__ == "__main__":
    main()
