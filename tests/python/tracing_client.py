"""A pyarrow client that sends its own W3C trace context with a call.

Usage: tracing_client.py URL TRACEPARENT

Calls do_action("echo", b"Hello, world!") with the header
`traceparent: TRACEPARENT`, as the Python cookbook says one can without
middleware, through FlightCallOptions, and prints the results.
"""

import sys

import pyarrow.flight as flight


def main() -> None:
    url, traceparent = sys.argv[1], sys.argv[2]
    client = flight.connect(url)
    options = flight.FlightCallOptions(
        headers=[(b"traceparent", traceparent.encode())]
    )
    action = flight.Action("echo", b"Hello, world!")
    for result in client.do_action(action, options=options):
        print(result.body.to_pybytes())
    client.close()


if __name__ == "__main__":
    main()
