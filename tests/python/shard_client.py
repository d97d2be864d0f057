"""A pyarrow client of the sharded `numbers` dataset.

Usage: shard_client.py grpc://HOST:PORT

Asks the server for the FlightInfo of ["numbers"], fetches every endpoint
from the server its first location names, and prints what it got.
"""

import sys

import pyarrow as pa
import pyarrow.flight as flight


def main():
    client = flight.FlightClient(sys.argv[1])
    info = client.get_flight_info(flight.FlightDescriptor.for_path("numbers"))
    print(f"{info.total_records} rows in {len(info.endpoints)} endpoints, ordered={info.ordered}")
    parts = []
    for endpoint in info.endpoints:
        location = endpoint.locations[0]
        shard = flight.FlightClient(location)
        parts.append(shard.do_get(endpoint.ticket).read_all())
        print(f"{endpoint.ticket.ticket.decode()}: {parts[-1].num_rows} rows")
    table = pa.concat_tables(parts)
    ids = table.column("id").to_pylist()
    print(f"{table.num_rows} rows, ids in order: {ids == list(range(len(ids)))}")


if __name__ == "__main__":
    main()
