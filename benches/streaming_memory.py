"""The streaming Parquet server's peak memory while pyarrow uploads to it.

Usage: python benches/streaming_memory.py SERVER_BINARY TOTAL_MIB BATCH_MIB

Starts the server (a release build of examples/streaming_parquet_server.rs)
on a new repository, uploads TOTAL_MIB of random Int64 in batches of
BATCH_MIB with pyarrow's client, batches sent whole, and prints the
server's peak resident memory (VmHWM, Linux) over its idle size.
"""

import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight


def peak_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def main(binary, total_mib, batch_mib):
    with tempfile.TemporaryDirectory() as repo:
        server = subprocess.Popen(
            [binary, "127.0.0.1:0", "--repo", repo],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            url = re.search(r"grpc://\S+", server.stdout.readline()).group(0)
            client = flight.connect(url)
            list(client.list_flights())
            time.sleep(0.5)
            idle = peak_mib(server.pid)
            rows = int(batch_mib * 1024 * 1024 / 8)
            random = np.random.default_rng(1)
            batches = [
                pa.record_batch(
                    [pa.array(random.integers(-(2**62), 2**62, rows))],
                    names=["ints"],
                )
                for _ in range(4)
            ]
            count = int(total_mib / batch_mib)
            started = time.time()
            descriptor = flight.FlightDescriptor.for_path("large.parquet")
            writer, _ = client.do_put(descriptor, batches[0].schema)
            for i in range(count):
                writer.write_batch(batches[i % len(batches)])
            writer.close()
            seconds = time.time() - started
            peak = peak_mib(server.pid)
            print(
                f"{total_mib} MiB in batches of {batch_mib} MiB: idle "
                f"{idle:.1f} MiB, peak {peak:.1f} MiB, over idle "
                f"{peak - idle:.1f} MiB, {total_mib / seconds:.0f} MiB/s"
            )
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
