"""Uploads what a new pyarrow user sends to a Flight server that takes uploads.

Usage: wire_uploads.py grpc://HOST:PORT put|exchange [SKIPPED_CASE...]

`put`: each case is uploaded with DoPut under a PATH descriptor of one name
(the case's), then read back, with GetFlightInfo's ticket where the server
offers it and a ticket of the name where it does not, and compared by value.
`exchange`: each case is sent through DoExchange with a `value` column, and
the running totals read back. Prints one line per case: `NAME: ok` or
`NAME: ERROR TYPE: first line of its message`.
"""

import datetime
import decimal
import sys

import pyarrow as pa
import pyarrow.flight as flight

MIB = 1024 * 1024


def strings(rows, size, seed="x"):
    return pa.array([(seed + str(i)).ljust(size, "y") for i in range(rows)])


def plain(rows=1000):
    ids = pa.array(range(rows), type=pa.int64())
    names = pa.array([f"name {i % 10}" for i in range(rows)])
    return pa.table({"value": ids, "name": names})


def dictionaries():
    kind = pa.dictionary(pa.int32(), pa.string())
    schema = pa.schema([("value", pa.int64()), ("kind", kind)])
    first = pa.record_batch(
        [pa.array([1, 2, 3]), pa.array(["a", "b", "a"]).dictionary_encode()],
        schema=schema,
    )
    # The second batch's dictionary replaces the first's.
    second = pa.record_batch(
        [pa.array([4, 5]), pa.array(["c", "d"]).dictionary_encode()],
        schema=schema,
    )
    return pa.Table.from_batches([first, second])


def nested():
    point = pa.struct([("x", pa.int64()), ("tags", pa.list_(pa.string()))])
    values = [{"x": 1, "tags": ["a", "b"]}, None, {"x": 3, "tags": []}]
    return pa.table(
        {"value": pa.array([1, 2, 3]), "point": pa.array(values, type=point)}
    )


def typed():
    stamps = [datetime.datetime(2024, 1, 2, 3, 4, 5, 123456)] * 2
    return pa.table(
        {
            "value": pa.array([1, 2]),
            "at": pa.array(stamps, type=pa.timestamp("us", tz="Europe/Paris")),
            "price": pa.array(
                [decimal.Decimal("12.34"), decimal.Decimal("-0.01")],
                type=pa.decimal128(10, 2),
            ),
            "label": pa.array(["short", "a longer label"], type=pa.string_view()),
        }
    )


def zero_rows():
    # A batch of no rows: a table of no rows would send no batch at all.
    return pa.record_batch(
        {"value": pa.array([], pa.int64()), "name": pa.array([], pa.string())}
    )


def empty():
    # A schema and no batch at all.
    return pa.schema([("value", pa.int64()), ("name", pa.string())])


def big():
    # One batch of 8,192 strings of 1 KiB: about 8 MiB in one message.
    return pa.table({"value": pa.array(range(8192)), "text": strings(8192, 1024)})


def too_big():
    # One batch of 72 strings of 1 MiB: 72 MiB in one message.
    return pa.table({"value": pa.array(range(72)), "text": strings(72, MIB)})


def options(compression=None):
    write_options = pa.ipc.IpcWriteOptions(compression=compression)
    return flight.FlightCallOptions(write_options=write_options)


CASES = [
    ("zstd", plain, "zstd"),
    ("lz4", plain, "lz4"),
    ("zstd_dictionary", dictionaries, "zstd"),
    ("big_batch", big, None),
    ("big_batch_zstd", big, "zstd"),
    ("too_big", too_big, None),
    ("dictionary", dictionaries, None),
    ("nested", nested, None),
    ("typed", typed, None),
    ("zero_rows", zero_rows, None),
    ("empty", empty, None),
]


def read_back(client, name):
    descriptor = flight.FlightDescriptor.for_path(name)
    try:
        ticket = client.get_flight_info(descriptor).endpoints[0].ticket
    except (flight.FlightError, pa.ArrowNotImplementedError):
        ticket = flight.Ticket(name.encode())
    return client.do_get(ticket).read_all()


def parts(data):
    """The schema and batches of a table, a batch or a bare schema."""
    if isinstance(data, pa.Schema):
        return data, []
    if isinstance(data, pa.RecordBatch):
        return data.schema, [data]
    return data.schema, data.to_batches()


def put(client, name, data, compression):
    descriptor = flight.FlightDescriptor.for_path(name)
    schema, batches = parts(data)
    writer, _ = client.do_put(descriptor, schema, options=options(compression))
    for batch in batches:
        writer.write_batch(batch)
    writer.close()
    back = read_back(client, name)
    if back.to_pylist() != pa.Table.from_batches(batches, schema).to_pylist():
        return f"read back {back.num_rows} rows, other than those sent"
    return "ok"


def exchange(client, name, data, compression):
    schema, batches = parts(data)
    descriptor = flight.FlightDescriptor.for_command(name.encode())
    writer, reader = client.do_exchange(descriptor, options=options(compression))
    writer.begin(schema)
    for batch in batches:
        writer.write_batch(batch)
    writer.done_writing()
    back = reader.read_all()
    writer.close()
    totals, total = [], 0
    for value in pa.Table.from_batches(batches, schema).column("value").to_pylist():
        total += value or 0
        totals.append(total)
    if back.column("running_total").to_pylist() != totals:
        return "wrong running totals"
    return "ok"


def main():
    url, mode = sys.argv[1], sys.argv[2]
    client = flight.connect(url)
    call = put if mode == "put" else exchange
    for name, make, compression in CASES:
        if name in sys.argv[3:]:
            continue
        try:
            result = call(client, name, make(), compression)
        except Exception as error:
            message = str(error).splitlines()[0] if str(error) else ""
            result = f"{type(error).__name__}: {message}"
        print(f"{name}: {result}", flush=True)


if __name__ == "__main__":
    main()
