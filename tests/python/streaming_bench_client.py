"""pyarrow's own client for the streaming Parquet benchmark (benches/recipes.rs).

It connects to the server at the URL given as the only argument, makes 256
batches of 4096 random Int64 values, prints

    ready

and then answers each line of its standard input:

    put NAME BATCHES   uploads BATCHES batches, cycling through the 256
    get NAME BATCHES   reads NAME back and checks that it has as many rows

with one line, `SECONDS CPU_SECONDS`: the time the call took and the CPU
time this process used during it. It ends when its standard input closes.
"""

import random
import sys
import time

import pyarrow as pa
import pyarrow.flight as flight

ROWS_PER_BATCH = 4096
POOL_BATCHES = 256


def fail(message):
    print(f"FAILED: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def pool():
    numbers = random.Random(0x9E3779B9)
    schema = pa.schema([("ints", pa.int64())])
    batches = []
    for _ in range(POOL_BATCHES):
        values = pa.py_buffer(numbers.randbytes(8 * ROWS_PER_BATCH))
        ints = pa.Array.from_buffers(pa.int64(), ROWS_PER_BATCH, [None, values])
        batches.append(pa.record_batch([ints], schema=schema))
    return schema, batches


def put(client, schema, batches, name, count):
    descriptor = flight.FlightDescriptor.for_path(name)
    writer, _ = client.do_put(descriptor, schema)
    for i in range(count):
        writer.write_batch(batches[i % len(batches)])
    writer.close()


def get(client, name, count):
    info = client.get_flight_info(flight.FlightDescriptor.for_path(name))
    rows = 0
    for chunk in client.do_get(info.endpoints[0].ticket):
        rows += chunk.data.num_rows
    if rows != count * ROWS_PER_BATCH:
        fail(f"{name}: got {rows} rows back, sent {count * ROWS_PER_BATCH}")


def main():
    if len(sys.argv) != 2:
        fail(f"usage: {sys.argv[0]} grpc://HOST:PORT")
    client = flight.connect(sys.argv[1])
    schema, batches = pool()
    print("ready", flush=True)
    for line in sys.stdin:
        what, name, count = line.split()
        started, cpu = time.perf_counter(), time.process_time()
        if what == "put":
            put(client, schema, batches, name, int(count))
        elif what == "get":
            get(client, name, int(count))
        else:
            fail(f"unknown command {what!r}")
        seconds = time.perf_counter() - started
        print(f"{seconds} {time.process_time() - cpu}", flush=True)


if __name__ == "__main__":
    main()
