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
    with connect() as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM animals")
        print("before", cursor.fetchone())
        time.sleep(40)
        try:
            cursor.execute("SELECT count(*) FROM animals")
            print("after 40 s", cursor.fetchone())
            cursor.execute("INSERT INTO animals VALUES ('bee', 6, 1.5)")
            connection.commit()
            cursor.execute("SELECT count(*) FROM animals")
            print("after commit", cursor.fetchone())
        except adbc_driver_manager.Error as error:
            print(type(error).__name__, error)


SLOW = (
    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n "
    "WHERE x < {}) SELECT count(*) FROM n"
)


def runs():
    sql = SLOW.format(5_000_000)
    start = time.monotonic()
    sqlite3.connect(":memory:").execute(sql).fetchall()
    once = time.monotonic() - start
    with connect() as connection, connection.cursor() as cursor:
        start = time.monotonic()
        cursor.adbc_prepare(sql)
        prepared = time.monotonic()
        cursor.execute(sql)
        executed = time.monotonic()
        rows = cursor.fetchall()
        fetched = time.monotonic()
        connection.commit()
    total = fetched - start
    sys.stderr.write(
        f"one run in sqlite3 {once:.2f} s; prepare {prepared - start:.2f} s, "
        f"execute {executed - prepared:.2f} s, fetch {fetched - executed:.2f} s, "
        f"in all {total:.2f} s\n"
    )
    print("rows", rows)
    # One run, with room for a loaded machine; two runs or more fail.
    print("runs at most once", total < 1.7 * once)


def deadline():
    limits = {
        "adbc.flight.sql.rpc.timeout_seconds.query": "1",
        "adbc.flight.sql.rpc.timeout_seconds.fetch": "1",
    }
    with connect() as connection, connection.cursor() as cursor:
        cursor.adbc_statement.set_options(**limits)
        start = time.monotonic()
        try:
            cursor.execute(SLOW.format(300_000_000))
            print("answered", cursor.fetchall())
        except adbc_driver_manager.Error as error:
            print(type(error).__name__, str(error).split(":")[0])
        failed = time.monotonic() - start
    with connection.cursor() as cursor:
        start = time.monotonic()
        cursor.execute("SELECT count(*) FROM animals")
        print("then", cursor.fetchone())
        then = time.monotonic() - start
        connection.commit()
    sys.stderr.write(f"failed after {failed:.2f} s; the next query took {then:.2f} s\n")
    print("ended within 2 s", failed < 2.0)
    print("the next query within 1 s", then < 1.0)


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
