"""A pyarrow Flight server for the gRPC options chapter.

do_get takes a row count as its ticket and sends that many Int64 numbers as
one record batch, which pyarrow sends as one message, however large; do_put
answers with the number of rows and batches it received. It listens on a
free port of 127.0.0.1, prints

    Serving on grpc://127.0.0.1:PORT

once it accepts calls, and stops when its standard input is closed.
tests/recipes/grpc_options_pyarrow.rs starts it.
"""

import sys
import threading

import pyarrow as pa
import pyarrow.flight as flight


class OptionsServer(flight.FlightServerBase):
    def do_get(self, context, ticket):
        rows = int(ticket.ticket.decode("utf-8"))
        table = pa.table({"n": pa.array(range(rows), type=pa.int64())})
        return flight.RecordBatchStream(table.combine_chunks())

    def do_put(self, context, descriptor, reader, writer):
        rows = batches = 0
        for chunk in reader:
            rows += chunk.data.num_rows
            batches += 1
        writer.write(pa.py_buffer(f"{rows} rows in {batches} batches".encode()))


def main():
    server = OptionsServer(location="grpc://127.0.0.1:0")
    stop = threading.Event()

    def watch_stdin():
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(f"Serving on grpc://127.0.0.1:{server.port}", flush=True)
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.wait()


if __name__ == "__main__":
    main()
