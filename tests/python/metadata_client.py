"""A pyarrow Flight client for the chapter "Order, metadata and trailers of a result".

Usage: metadata_client.py grpc://HOST:PORT

Prints what pyarrow sees of the server's FlightInfos (ordered, app_metadata,
each endpoint's ticket, app_metadata and locations), reads `numbers` in
endpoint order, prints the headers and trailers of one part as client
middleware receives them, and downloads `slow` with a 0.5 s timeout.
"""

import sys

import pyarrow.flight as flight


class Recorder(flight.ClientMiddlewareFactory):
    """Keeps every set of headers the calls receive, in order."""

    def __init__(self):
        self.received = []

    def start_call(self, info):
        return RecordingMiddleware(self)


class RecordingMiddleware(flight.ClientMiddleware):
    def __init__(self, factory):
        self.factory = factory

    def received_headers(self, headers):
        self.factory.received.append(headers)


def describe(client, name):
    info = client.get_flight_info(flight.FlightDescriptor.for_path(name))
    print(f"{name}: ordered {info.ordered}, app_metadata {info.app_metadata!r}")
    for endpoint in info.endpoints:
        print(
            f"  endpoint {endpoint.ticket.ticket!r}: app_metadata "
            f"{endpoint.app_metadata!r}, locations {list(endpoint.locations)}"
        )
    return info


def main():
    recorder = Recorder()
    client = flight.FlightClient(sys.argv[1], middleware=[recorder])
    numbers = describe(client, "numbers")
    describe(client, "sample")

    ids = []
    for endpoint in numbers.endpoints:
        table = client.do_get(endpoint.ticket).read_all()
        ids.extend(table.column("id").to_pylist())
    in_order = ids == list(range(3000))
    print(f"read in endpoint order: ids 0 to 2999 in order: {in_order}")

    recorder.received.clear()
    client.do_get(flight.Ticket(b"numbers/0")).read_all()
    ours = [
        sorted(key for key in headers if key.startswith("x-"))
        for headers in recorder.received
    ]
    print(f"received_headers calls, our keys: {ours}")
    merged = {}
    for headers in recorder.received:
        merged.update(headers)
    print(f"headers: x-rows-planned {merged.get('x-rows-planned')}")
    micros = merged.get("x-server-micros", [""])[0]
    print(
        f"trailers: x-rows-sent {merged.get('x-rows-sent')}, "
        f"x-server-micros is a number: {micros.isdigit()}"
    )

    options = flight.FlightCallOptions(timeout=0.5)
    try:
        client.do_get(flight.Ticket(b"slow"), options).read_all()
        print("slow with a 0.5 s timeout: finished")
    except flight.FlightError as error:
        print(f"slow with a 0.5 s timeout: {type(error).__name__}")


if __name__ == "__main__":
    main()
