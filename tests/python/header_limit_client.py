"""A pyarrow client that makes a call with an oversized header while a
download is in flight on the same FlightClient, as issue 13 measured.

Given a server URL, it uploads 8,388,608 Int64 rows (64 MiB) as the dataset
"big", starts downloading it, and after the first batch makes a list_actions
call whose `x-filler` header is 64 KiB long. It prints what that call got,
then reads the rest of the download and prints

    downloaded N rows

tests/header_limit.rs runs it.
"""

import sys

import pyarrow as pa
import pyarrow.flight as flight

ROWS = 8 * 1024 * 1024
BATCH_ROWS = 4096


def main():
    client = flight.FlightClient(sys.argv[1])
    batch = pa.record_batch([pa.array(range(BATCH_ROWS), type=pa.int64())], ["n"])
    descriptor = flight.FlightDescriptor.for_path("big")
    writer, _ = client.do_put(descriptor, batch.schema)
    for _ in range(ROWS // BATCH_ROWS):
        writer.write_batch(batch)
    writer.close()

    reader = client.do_get(flight.Ticket(b"big"))
    rows = reader.read_chunk().data.num_rows

    options = flight.FlightCallOptions(headers=[(b"x-filler", b"x" * 65536)])
    try:
        list(client.list_actions(options=options))
        print("oversized: accepted")
    except Exception as error:
        print(f"oversized: {type(error).__name__}: {error}".splitlines()[0])

    while True:
        try:
            rows += reader.read_chunk().data.num_rows
        except StopIteration:
            break
    print(f"downloaded {rows} rows")


if __name__ == "__main__":
    main()
