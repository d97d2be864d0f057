"""A pyarrow Flight client for the DoExchange and app_metadata chapter's server.

Usage: exchange_client.py grpc://HOST:PORT

Exchanges batches one at a time (reading each result before sending the
next), uploads batches with app_metadata and reads each acknowledgement
before sending the next, downloads them with their app_metadata, and sends a
batch with no `value` column. Prints one line per event.
"""

import sys

import pyarrow as pa
import pyarrow.flight as flight


def values(*numbers):
    return pa.record_batch({"value": pa.array(numbers, type=pa.int64())})


def exchange(client):
    descriptor = flight.FlightDescriptor.for_command(b"running total")
    writer, reader = client.do_exchange(descriptor)
    batches = [values(1, 2, 3), values(10, 20), values(100)]
    writer.begin(batches[0].schema)
    for i, batch in enumerate(batches, 1):
        writer.write_batch(batch)
        print(f"sent batch {i}: value {batch.column('value').to_pylist()}")
        chunk = reader.read_chunk()
        totals = chunk.data.column("running_total").to_pylist()
        print(f"got batch {i}: running_total {totals}")
    writer.done_writing()
    try:
        reader.read_chunk()
        print("unexpected: more results")
    except StopIteration:
        pass
    writer.close()


def upload(client):
    descriptor = flight.FlightDescriptor.for_path("numbers")
    batches = [values(1, 2, 3), values(4, 5), values(6)]
    writer, acks = client.do_put(descriptor, batches[0].schema)
    for i, batch in enumerate(batches, 1):
        writer.write_with_metadata(batch, pa.py_buffer(f"part {i}".encode()))
        print(acks.read().to_pybytes().decode())
    writer.done_writing()
    writer.close()


def download(client):
    reader = client.do_get(flight.Ticket(b"numbers"))
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            break
        progress = chunk.app_metadata.to_pybytes().decode()
        print(f"{progress}: value {chunk.data.column('value').to_pylist()}")


def wrong_schema(client):
    descriptor = flight.FlightDescriptor.for_command(b"running total")
    writer, reader = client.do_exchange(descriptor)
    batch = pa.record_batch({"name": pa.array(["a", "b"])})
    try:
        writer.begin(batch.schema)
        writer.write_batch(batch)
        writer.done_writing()
        reader.read_all()
        print("unexpected: no error")
    except pa.ArrowException as error:
        print(f"{type(error).__name__}: {error}")


def main():
    client = flight.FlightClient(sys.argv[1])
    exchange(client)
    upload(client)
    download(client)
    wrong_schema(client)


if __name__ == "__main__":
    main()
