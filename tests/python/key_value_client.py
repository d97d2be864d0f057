"""A pyarrow client of the in-memory key-value service.

Usage: key_value_client.py grpc://HOST:PORT

Puts two batches of names under the key "profiles", describes, gets, lists
and deletes them, as the Java cookbook's client does, and prints one line
per step. Then asks for the deleted key and prints the error.
"""

import sys

import pyarrow as pa
import pyarrow.flight as flight


def main():
    client = flight.FlightClient(sys.argv[1])
    descriptor = flight.FlightDescriptor.for_path("profiles")
    schema = pa.schema([("name", pa.string())])
    writer, _ = client.do_put(descriptor, schema)
    for names in (["Ronald", "David", "Francisco"], ["Manuel", "Felipe", "JJ"]):
        writer.write_batch(pa.record_batch([pa.array(names)], schema=schema))
    writer.close()
    print("put 2 batches")

    info = client.get_flight_info(descriptor)
    print(f"info: {info.descriptor.path} {info.schema} rows={info.total_records} "
          f"endpoints={len(info.endpoints)} locations={len(info.endpoints[0].locations)}")

    table = client.do_get(info.endpoints[0].ticket).read_all()
    print(f"get: {table.column('name').to_pylist()}")

    print(f"list: {[f.descriptor.path for f in client.list_flights()]}")
    print(f"actions: {[a.type for a in client.list_actions()]}")
    results = list(client.do_action(flight.Action("DELETE", b"profiles")))
    print(f"delete: {results[0].body.to_pybytes().decode()}")
    print(f"list: {[f.descriptor.path for f in client.list_flights()]}")
    try:
        client.get_flight_info(descriptor)
    except pa.ArrowException as error:
        print(f"after delete: {type(error).__name__}: {str(error).splitlines()[0]}")


if __name__ == "__main__":
    main()
