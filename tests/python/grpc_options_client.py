"""A pyarrow Flight client for the gRPC options chapter's server.

Usage: grpc_options_client.py grpc://HOST:PORT

Downloads a million rows (one 8 MB message from our server), uploads a
million rows and then ten million in one batch each, and prints one line per
step: what arrived, or the error's class and message.
"""

import sys

import pyarrow as pa
import pyarrow.flight as flight


def upload(client, rows):
    table = pa.table({"n": pa.array([n % 1000 for n in range(rows)], type=pa.int64())})
    descriptor = flight.FlightDescriptor.for_path("numbers")
    writer, reader = client.do_put(descriptor, table.schema)
    try:
        writer.write_table(table.combine_chunks(), max_chunksize=rows)
        writer.done_writing()
        answer = reader.read()
        writer.close()
        return answer.to_pybytes().decode()
    except pa.ArrowException as error:
        return f"{type(error).__name__}: {error}"


def main():
    client = flight.FlightClient(sys.argv[1])
    table = client.do_get(flight.Ticket(b"1000000")).read_all()
    print(f"{table.num_rows} rows in {len(table.to_batches())} batches")
    print(upload(client, 1_000_000))
    print(upload(client, 10_000_000))
    try:
        client.do_get(flight.Ticket(b"lots")).read_all()
    except pa.ArrowException as error:
        print(f"{type(error).__name__}: {error}")


if __name__ == "__main__":
    main()
