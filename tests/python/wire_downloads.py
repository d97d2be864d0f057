"""Reads the wire chapter's downloads with pyarrow, after its client ran.

Usage: wire_downloads.py grpc://HOST:PORT

Prints, for each ticket, the type of the first column and its values.
"""

import sys

import pyarrow.flight as flight


def main():
    client = flight.connect(sys.argv[1])
    for ticket in ["animals lz4", "animals zstd", "kinds hydrate", "kinds resend"]:
        table = client.do_get(flight.Ticket(ticket.encode())).read_all()
        column = table.column(0)
        values = column.to_pylist()
        shown = values if len(values) < 10 else values[:3] + ["..."]
        print(f"{ticket}: {table.num_rows} rows, {column.type}: {shown}")


if __name__ == "__main__":
    main()
