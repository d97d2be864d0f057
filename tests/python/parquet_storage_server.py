"""A pyarrow Flight server for the Parquet storage recipes.

It is the streaming server of the Python cookbook page ("Streaming Parquet
Storage Service"): each dataset is a Parquet file in the repository folder
given as the only argument, uploads are written batch by batch and datasets
are sent back batch by batch. It listens on a free port of 127.0.0.1, prints

    Serving on grpc://127.0.0.1:PORT

once it accepts calls, and stops when its standard input is closed or when
it gets SIGTERM or SIGINT. tests/recipes/parquet_storage_pyarrow.rs starts it.
"""

import pathlib
import signal
import sys
import threading

import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq


class ParquetStorageServer(flight.FlightServerBase):
    def __init__(self, repo, location="grpc://127.0.0.1:0", **kwargs):
        super().__init__(location, **kwargs)
        # The port the system chose, for the endpoints' locations.
        self._location = f"grpc://127.0.0.1:{self.port}"
        self._repo = repo

    def _info(self, name):
        path = self._repo / name
        metadata = pq.read_metadata(path)
        return flight.FlightInfo(
            pq.read_schema(path),
            flight.FlightDescriptor.for_path(name.encode()),
            [flight.FlightEndpoint(name, [self._location])],
            metadata.num_rows,
            metadata.serialized_size,
        )

    def list_flights(self, context, criteria):
        for path in self._repo.iterdir():
            yield self._info(path.name)

    def get_flight_info(self, context, descriptor):
        return self._info(descriptor.path[0].decode())

    def do_put(self, context, descriptor, reader, writer):
        path = self._repo / descriptor.path[0].decode()
        with path.open("wb") as sink:
            with pq.ParquetWriter(sink, reader.schema) as parquet_writer:
                for chunk in reader:
                    parquet_writer.write_table(pa.Table.from_batches([chunk.data]))

    def do_get(self, context, ticket):
        parquet_file = pq.ParquetFile(self._repo / ticket.ticket.decode())
        return flight.GeneratorStream(parquet_file.schema_arrow, parquet_file.iter_batches())

    def list_actions(self, context):
        return [("drop_dataset", "Delete a dataset.")]

    def do_action(self, context, action):
        if action.type != "drop_dataset":
            raise NotImplementedError(action.type)
        (self._repo / action.body.to_pybytes().decode()).unlink()


def main():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} REPOSITORY", file=sys.stderr)
        sys.exit(2)
    repo = pathlib.Path(sys.argv[1])
    repo.mkdir(exist_ok=True)
    server = ParquetStorageServer(repo)

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def watch_stdin():
        # read() returns once the parent closes the pipe (or dies).
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()

    # The constructor has already started the server.
    print(f"Serving on grpc://127.0.0.1:{server.port}", flush=True)
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.wait()


if __name__ == "__main__":
    main()
