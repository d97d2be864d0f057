"""pyarrow against the stored-Arrow server (tests/recipes/stored_arrow.rs).

Usage: stored_arrow_client.py URL REPO. Reads the dataset our client
uploaded, uploads a table of its own and reads it back, and writes an Arrow
IPC file into the server's folder REPO, which our client then reads.
"""

import sys

import pyarrow as pa
import pyarrow.flight as flight


def main():
    url, repo = sys.argv[1], sys.argv[2]
    client = flight.connect(url)

    table = client.do_get(flight.Ticket(b"from_rust.arrow")).read_all()
    ints = table.column("ints").to_pylist()
    print(f"from_rust.arrow: {table.num_rows} rows, ints {ints[0]}..{ints[-1]}",
          flush=True)

    batches = [
        pa.record_batch({
            "ints": pa.array(range(i * 1000, (i + 1) * 1000), pa.int64()),
            "tags": pa.array([f"tag {j % 7}" for j in range(1000)]).dictionary_encode(),
        })
        for i in range(30)
    ]
    table = pa.Table.from_batches(batches)
    descriptor = flight.FlightDescriptor.for_path("from_pyarrow.arrow")
    writer, _ = client.do_put(descriptor, table.schema)
    writer.write_table(table)
    writer.close()
    info = client.get_flight_info(descriptor)
    back = client.do_get(info.endpoints[0].ticket).read_all()
    assert info.total_records == table.num_rows, info.total_records
    assert info.schema == table.schema, info.schema
    same = "equal" if back.equals(table) else "DIFFERENT"
    print(f"from_pyarrow.arrow: {back.num_rows} rows read back {same}", flush=True)

    with pa.OSFile(f"{repo}/written_by_pyarrow.arrow", "wb") as sink:
        with pa.ipc.new_file(sink, batches[0].schema) as file:
            for batch in batches[:3]:
                file.write_batch(batch)
    print("wrote written_by_pyarrow.arrow", flush=True)


if __name__ == "__main__":
    main()
