"""The ADBC Flight SQL driver with its DB-API's defaults (autocommit off, so
every statement runs in a transaction the driver began) against the Flight
SQL recipe's SQLite server, one case at a time:

- ingest: a query, an ingest, then a query of the ingested table;
- idle: a connection that sits idle longer than the server's idle limit;
- runs: how long a slow query takes to prepare, execute and fetch, against
  one run of it in Python's own sqlite3;
- deadline: a query with a time limit of one second, then the next
  statement on the same connection;
- types: which Arrow types come back as they went in through adbc_ingest.

Usage: python flight_sql_adbc_defaults.py grpc://HOST:PORT CASE
"""

import datetime
import decimal
import sqlite3
import sys
import time

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import pyarrow as pa

uri, case = sys.argv[1], sys.argv[2]
login = {"username": "test", "password": "password"}


def connect():
    return flight_sql.connect(uri, db_kwargs=login)


def ingest():
    with connect() as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM animals")
        print("animals", cursor.fetchone())
        table = pa.table({"x": [1, 2, 3]})
        print("ingested", cursor.adbc_ingest("t", table, mode="create"))
        try:
            cursor.execute("SELECT * FROM t")
            print("t", cursor.fetchall())
        except adbc_driver_manager.Error as error:
            print(type(error).__name__, error)
        connection.commit()


def idle():
    count = "SELECT count(*) FROM animals"
    with connect() as reader, connect() as writer:
        with reader.cursor() as read, writer.cursor() as write:
            read.execute(count)
            print("before", read.fetchone())
            # The writer holds SQLite's write lock from here on.
            write.execute("INSERT INTO animals VALUES ('bee', 6, 1.5)")
            time.sleep(32)
            read.execute(count)
            print("after 32 s", read.fetchone())
            try:
                write.execute(count)
                print("the writer", write.fetchone())
            except adbc_driver_manager.Error as error:
                print(type(error).__name__, str(error).split(" and was")[0])
            write.execute(count)
            print("the writer, then", write.fetchone())
            read.execute("INSERT INTO animals VALUES ('wasp', 6, 2.0)")
            reader.commit()
            read.execute(count)
            print("after commit", read.fetchone())
            writer.commit()


SLOW = (
    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n "
    "WHERE x < {}) SELECT count(*) FROM n"
)


def timed(connection, sql):
    """Prepares, executes and fetches sql; returns the rows and the times."""
    with connection.cursor() as cursor:
        start = time.monotonic()
        cursor.adbc_prepare(sql)
        prepared = time.monotonic()
        cursor.execute(sql)
        executed = time.monotonic()
        rows = cursor.fetchall()
        fetched = time.monotonic()
    connection.commit()
    return rows, (prepared - start, executed - prepared, fetched - executed)


def runs():
    # The same work twice: a count whose type the first row tells, and a
    # query whose one column is declared (animals.legs), which the server
    # never ran more than once.
    cte = SLOW.format(2_000_000).rsplit(" SELECT", 1)[0]
    counted = cte + " SELECT count(*) FROM n"
    declared = cte + " SELECT legs FROM animals WHERE legs = (SELECT count(*) FROM n)"
    with connect() as connection:
        _, before = timed(connection, declared)
        rows, times = timed(connection, counted)
        _, after = timed(connection, declared)
    once = (sum(before) + sum(after)) / 2
    total = sum(times)
    sys.stderr.write(
        f"one run {once:.2f} s; prepare {times[0]:.2f} s, execute {times[1]:.2f} s, "
        f"fetch {times[2]:.2f} s, in all {total:.2f} s\n"
    )
    print("rows", rows)
    # One run, with room for a loaded machine; two runs or more fail.
    print("runs at most once", total < 1.6 * once)


def deadline():
    limits = {
        "adbc.flight.sql.rpc.timeout_seconds.query": "1",
        "adbc.flight.sql.rpc.timeout_seconds.fetch": "1",
    }
    with connect() as connection:
        with connection.cursor() as cursor:
            cursor.adbc_statement.set_options(**limits)
            start = time.monotonic()
            try:
                cursor.execute(SLOW.format(300_000_000))
                print("answered", cursor.fetchall())
            except adbc_driver_manager.Error as error:
                print(type(error).__name__)
                sys.stderr.write(f"{error}\n")
            failed = time.monotonic() - start
        with connection.cursor() as cursor:
            start = time.monotonic()
            cursor.execute("SELECT count(*) FROM animals")
            print("then", cursor.fetchone())
            then = time.monotonic() - start
            connection.commit()
    sys.stderr.write(f"failed after {failed:.2f} s; the next query took {then:.2f} s\n")
    # Left running, the query would take minutes: the bounds leave room for
    # a machine busy with other tests.
    print("ended within 5 s", failed < 5.0)
    print("the next query within 5 s", then < 5.0)


def types():
    when = datetime.datetime(2024, 1, 2, 3, 4, 5, 123456)
    columns = {
        "int64": pa.array([1], pa.int64()),
        "int32": pa.array([1], pa.int32()),
        "uint8": pa.array([1], pa.uint8()),
        "float64": pa.array([1.5], pa.float64()),
        "float32": pa.array([1.5], pa.float32()),
        "bool": pa.array([True], pa.bool_()),
        "string": pa.array(["a"], pa.string()),
        "large_string": pa.array(["a"], pa.large_string()),
        "binary": pa.array([b"\xca\xfe"], pa.binary()),
        "timestamp_us": pa.array([when], pa.timestamp("us")),
        "timestamp_ms": pa.array([when.replace(microsecond=123000)], pa.timestamp("ms")),
        "timestamp_s": pa.array([when.replace(microsecond=0)], pa.timestamp("s")),
        "timestamp_ns": pa.array([when], pa.timestamp("ns")),
        "timestamp_us_utc": pa.array([when], pa.timestamp("us", tz="UTC")),
        "date32": pa.array([when.date()], pa.date32()),
        "date64": pa.array([when.date()], pa.date64()),
        "time64": pa.array([when.time()], pa.time64("us")),
        "decimal": pa.array([decimal.Decimal("1.25")], pa.decimal128(5, 2)),
    }
    table = pa.table(columns)
    with connect() as connection, connection.cursor() as cursor:
        cursor.adbc_ingest("typed", table, mode="create")
        connection.commit()
        cursor.execute("SELECT * FROM typed")
        back = cursor.fetch_arrow_table()
        connection.commit()
    for name, column in zip(table.column_names, table.columns):
        came = back.column(name)
        same = came.type == column.type and came.to_pylist() == column.to_pylist()
        print(name, "same" if same else f"{came.type} {came.to_pylist()!r}")


{"ingest": ingest, "idle": idle, "runs": runs, "deadline": deadline, "types": types}[
    case
]()
