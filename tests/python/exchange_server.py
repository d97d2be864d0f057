"""A pyarrow Flight server that does what the DoExchange and app_metadata
chapter's server does.

do_exchange adds a column `running_total` to each batch as it arrives;
do_put acknowledges each batch with "stored LABEL, rows: N", LABEL being the
batch's app_metadata; do_get sends the stored batches of a dataset, each with
"batch I of N" as its app_metadata. It listens on a free port of 127.0.0.1,
prints

    Serving on grpc://127.0.0.1:PORT

once it accepts calls, and stops when its standard input is closed.
tests/recipes/exchange_pyarrow.rs starts it.
"""

import sys
import threading

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight


class ExchangeServer(flight.FlightServerBase):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.datasets = {}

    def do_exchange(self, context, descriptor, reader, writer):
        total = 0
        started = False
        for chunk in reader:
            if chunk.data is None:
                continue
            values = chunk.data.column("value")
            totals = pc.add(pc.cumulative_sum(values), total)
            total = totals[-1].as_py() if len(totals) else total
            result = chunk.data.append_column("running_total", totals)
            if not started:
                writer.begin(result.schema)
                started = True
            writer.write_batch(result)

    def do_put(self, context, descriptor, reader, writer):
        name = descriptor.path[0].decode()
        batches = self.datasets[name] = []
        for chunk in reader:
            if chunk.data is None:
                continue
            batches.append(chunk.data)
            label = chunk.app_metadata.to_pybytes().decode()
            ack = f"stored {label}, rows: {chunk.data.num_rows}"
            writer.write(pa.py_buffer(ack.encode()))

    def do_get(self, context, ticket):
        batches = self.datasets[ticket.ticket.decode()]
        count = len(batches)
        labelled = [
            (batch, pa.py_buffer(f"batch {i} of {count}".encode()))
            for i, batch in enumerate(batches, 1)
        ]
        return flight.GeneratorStream(batches[0].schema, iter(labelled))


def main():
    server = ExchangeServer(location="grpc://127.0.0.1:0")
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
