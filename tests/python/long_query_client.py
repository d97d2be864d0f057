"""A pyarrow client of the long queries chapter's server.

Usage: long_query_client.py grpc://HOST:PORT

pyarrow 26's FlightClient has no poll_flight_info, cancel_flight_info or
renew_flight_endpoint. So this script polls with grpcio (the PollInfo read
with a few lines of protobuf decoding, its FlightInfo with pyarrow), and
cancels and renews with do_action and pyarrow's own serialize(), as
Flight.proto defines the two actions. It checks that pyarrow reads each
endpoint's expiration_time as it is on the wire. Prints one line per event.
"""

import struct
import sys

import grpc
import pyarrow as pa
import pyarrow.flight as flight

POLL = "/arrow.flight.protocol.FlightService/PollFlightInfo"
CANCEL_STATUS = {
    0: "UNSPECIFIED",
    1: "CANCELLED",
    2: "CANCELLING",
    3: "NOT_CANCELLABLE",
}


def varint(data, at):
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def fields(data):
    """The (number, value) pairs of a protobuf message."""
    at = 0
    while at < len(data):
        key, at = varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = varint(data, at)
        elif wire == 1:
            value, at = data[at : at + 8], at + 8
        elif wire == 2:
            size, at = varint(data, at)
            value, at = data[at : at + size], at + size
        elif wire == 5:
            value, at = data[at : at + 4], at + 4
        else:
            raise ValueError(f"wire type {wire}")
        yield number, value


def encode_varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number, payload):
    """A length-delimited field: the body of the two actions."""
    return encode_varint(number << 3 | 2) + encode_varint(len(payload)) + payload


def timestamp_ns(data):
    parts = dict(fields(data))
    return parts.get(1, 0) * 1_000_000_000 + parts.get(2, 0)


def poll(call, descriptor):
    reply = dict(fields(call(descriptor, timeout=30)))
    info = flight.FlightInfo.deserialize(reply[1])
    progress = struct.unpack("<d", reply[3])[0] if 3 in reply else None
    return info, reply[1], reply.get(2), progress


def wire_expirations(info_bytes):
    """Each endpoint's expiration_time, in ns, as the server encoded it."""
    out = []
    for number, endpoint in fields(info_bytes):
        if number == 3:
            times = [v for n, v in fields(endpoint) if n == 3]
            out.append(timestamp_ns(times[0]) if times else None)
    return out


def pyarrow_expiration(endpoint):
    time = endpoint.expiration_time
    return None if time is None else time.cast(pa.timestamp("ns", tz="UTC")).value


def refusal(error):
    message = str(error).split(". gRPC client debug context")[0]
    return f"{type(error).__name__}: {message}"


def rows(client, endpoint):
    table = client.do_get(endpoint.ticket).read_all()
    n = table.column("n").to_pylist()
    return f"{len(n)} rows, n from {n[0]} to {n[-1]}"


def main():
    url = sys.argv[1]
    client = flight.FlightClient(url)
    channel = grpc.insecure_channel(url.split("://", 1)[1])
    call = channel.unary_unary(POLL)

    # Poll a query to its end, reading each part as it appears.
    descriptor = flight.FlightDescriptor.for_command(b"count to 1000").serialize()
    polls, read = 0, 0
    while descriptor is not None:
        info, info_bytes, descriptor, progress = poll(call, descriptor)
        polls += 1
        print(f"poll {polls}: {progress:.0%} done, {len(info.endpoints)} part(s)")
        wire = wire_expirations(info_bytes)
        for i, endpoint in enumerate(info.endpoints[read:], read):
            same = wire[i] is not None and pyarrow_expiration(endpoint) == wire[i]
            print(f"  part {i + 1}: {rows(client, endpoint)}; expiration_time as sent: {same}")
        read = len(info.endpoints)
    last = info.endpoints[-1]

    # Renew the last part with pyarrow's own serialization of it.
    body = field(1, last.serialize())
    result = next(iter(client.do_action(flight.Action("RenewFlightEndpoint", body))))
    renewed = flight.FlightEndpoint.deserialize(result.body.to_pybytes())
    later = pyarrow_expiration(renewed) > pyarrow_expiration(last)
    print(f"renewed part {len(info.endpoints)}: same ticket {renewed.ticket == last.ticket}, later {later}")

    # Cancel a query once a part is ready.
    descriptor = flight.FlightDescriptor.for_command(b"count to 1000").serialize()
    info, _, descriptor, _ = poll(call, descriptor)
    while not info.endpoints:
        info, _, descriptor, _ = poll(call, descriptor)
    body = field(1, info.serialize())
    result = next(iter(client.do_action(flight.Action("CancelFlightInfo", body))))
    status = dict(fields(result.body.to_pybytes())).get(1, 0)
    print(f"cancel: {CANCEL_STATUS[status]}")
    try:
        rows(client, info.endpoints[0])
        print("unexpected: read a cancelled query's part")
    except pa.ArrowException as error:
        print(f"read part 1: {refusal(error)}")
    try:
        poll(call, descriptor)
        print("unexpected: polled a cancelled query")
    except grpc.RpcError as error:
        print(f"poll: {error.code().name}: {error.details()}")

    # GetFlightInfo waits for the whole result; its endpoints are read once.
    info = client.get_flight_info(flight.FlightDescriptor.for_command(b"count to 500"))
    times = [endpoint.expiration_time for endpoint in info.endpoints]
    print(f"get_flight_info: {len(info.endpoints)} part(s), expiration_time {times}")
    print(f"read part 1: {rows(client, info.endpoints[0])}")
    try:
        rows(client, info.endpoints[0])
        print("unexpected: read a part twice")
    except pa.ArrowException as error:
        print(f"read part 1 again: {refusal(error)}")
    channel.close()


if __name__ == "__main__":
    main()
