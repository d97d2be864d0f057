"""A pyarrow Flight client for the Parquet storage recipes.

It takes the steps of the client on the Python cookbook page (sections
"Simple Parquet storage service" and "Streaming Parquet Storage Service")
against the server at the URL given as the only argument, and prints one
line per step for tests/recipes/parquet_storage_pyarrow.rs:

    put: uploaded.parquet
    info: uploaded.parquet rows=3 bytes=<N> schema=Character: string
    listed: uploaded.parquet
    get: ['Mario', 'Luigi', 'Peach']
    dropped: uploaded.parquet
    listed after drop: []
    streamed: 1024 batches
    read: Got 4194304 rows total, expected 4194304 in <N> batches
    dropped: streamed.parquet
    missing: ArrowKeyError: <error message>

Any unexpected outcome ends the script with a non-zero exit status.
"""

import sys

import pyarrow as pa
import pyarrow.flight as flight


def fail(message):
    print(f"FAILED: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def say(line):
    print(line, flush=True)


def names(client):
    return [info.descriptor.path[0].decode() for info in client.list_flights()]


def main():
    if len(sys.argv) != 2:
        fail(f"usage: {sys.argv[0]} grpc://HOST:PORT")
    client = flight.connect(sys.argv[1])

    # The simple recipe: a three-row table, uploaded whole.
    table = pa.table({"Character": ["Mario", "Luigi", "Peach"]})
    descriptor = flight.FlightDescriptor.for_path("uploaded.parquet")
    writer, _ = client.do_put(descriptor, table.schema)
    writer.write_table(table)
    writer.close()
    say("put: uploaded.parquet")

    info = client.get_flight_info(descriptor)
    path = info.descriptor.path[0].decode()
    schema = ", ".join(f"{field.name}: {field.type}" for field in info.schema)
    say(f"info: {path} rows={info.total_records} bytes={info.total_bytes} schema={schema}")
    say(f"listed: {', '.join(names(client))}")

    fetched = client.do_get(info.endpoints[0].ticket).read_all()
    say(f"get: {fetched.column('Character').to_pylist()}")

    list(client.do_action(flight.Action("drop_dataset", b"uploaded.parquet")))
    say("dropped: uploaded.parquet")
    say(f"listed after drop: {names(client)}")

    # The streaming recipe: many batches written one by one, read back one
    # by one.
    num_batches, rows_per_batch = 1024, 4096
    batch = pa.record_batch([pa.array(range(rows_per_batch))], names=["ints"])
    descriptor = flight.FlightDescriptor.for_path("streamed.parquet")
    writer, _ = client.do_put(descriptor, batch.schema)
    with writer:
        for _ in range(num_batches):
            writer.write_batch(batch)
    say(f"streamed: {num_batches} batches")

    info = client.get_flight_info(descriptor)
    reader = client.do_get(info.endpoints[0].ticket)
    total_rows = 0
    chunks = 0
    for chunk in reader:
        total_rows += chunk.data.num_rows
        chunks += 1
    expected = num_batches * rows_per_batch
    say(f"read: Got {total_rows} rows total, expected {expected} in {chunks} batches")

    list(client.do_action(flight.Action("drop_dataset", b"streamed.parquet")))
    say("dropped: streamed.parquet")

    try:
        client.get_flight_info(flight.FlightDescriptor.for_path("missing.parquet"))
    except KeyError as error:
        # pyarrow raises ArrowKeyError, a KeyError, for a NotFound status.
        say(f"missing: {type(error).__name__}: {error}")
    else:
        fail("a missing dataset was described")

    client.close()


if __name__ == "__main__":
    main()
