"""The ADBC Flight SQL driver, the reference Flight SQL client, against the
Flight SQL recipe's SQLite server, through its DB-API: log in, read the
server's info and catalog, execute with parameters (also through polars),
executemany, ingest, commit and roll back, execute in partitions; see a
refused statement and a refused login.

Usage: python flight_sql_adbc.py grpc://HOST:PORT
"""

import sys

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import polars
import pyarrow as pa

uri = sys.argv[1]
login = {"username": "test", "password": "password"}

with flight_sql.connect(uri, db_kwargs=login, autocommit=True) as connection:
    info = connection.adbc_get_info()
    print("vendor", info["vendor_name"])
    objects = connection.adbc_get_objects().read_all().to_pylist()
    for catalog in objects:
        for schema in catalog["catalog_db_schemas"]:
            for table in schema["db_schema_tables"]:
                columns = [c["column_name"] for c in table["table_columns"]]
                print("table", schema["db_schema_name"], table["table_name"], columns)
    print("schema", connection.adbc_get_table_schema("animals").types)
    print("types", connection.adbc_get_table_types())
    print(
        "current",
        repr(connection.adbc_current_catalog),
        repr(connection.adbc_current_db_schema),
    )
    try:
        connection.adbc_current_db_schema = "elsewhere"
        print("accepted: schema elsewhere")
    except adbc_driver_manager.Error as error:
        print(type(error).__name__, error)
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM animals WHERE legs = ? ORDER BY name", (4,))
        print("legs = 4", cursor.fetchall())
        # polars hands execute_options to the cursor's execute.
        sql = "SELECT name FROM animals WHERE legs = ? ORDER BY name"
        options = {"parameters": (4,)}
        frame = polars.read_database(sql, connection, execute_options=options)
        print("polars legs = 4", frame["name"].to_list())
        cursor.executemany(
            "INSERT INTO animals VALUES (?, ?, ?)", [("snail", 0, 3.0), ("bee", 6, 1.5)]
        )
        print("executemany", cursor.rowcount)
        table = pa.table({"x": [1, 2, 3]})
        print("ingest create", cursor.adbc_ingest("numbers", table, mode="create"))
        print("ingest append", cursor.adbc_ingest("numbers", table, mode="append"))
        print("ingest replace", cursor.adbc_ingest("numbers", table, mode="replace"))
        partitions, schema = cursor.adbc_execute_partitions("SELECT x FROM numbers")
        cursor.adbc_read_partition(partitions[0])
        print("partitions", len(partitions), schema.names, cursor.fetchall())
    with connection.cursor() as cursor:
        # Incremental execution: the driver polls (PollFlightInfo) until the
        # server says the query is complete.
        incremental = {"adbc.statement.exec.incremental": "true"}
        cursor.adbc_statement.set_options(**incremental)
        sql = "SELECT count(*) AS n FROM animals"
        partitions, schema = cursor.adbc_execute_partitions(sql)
        progress = cursor.adbc_statement.get_option_float("adbc.statement.exec.progress")
        cursor.adbc_read_partition(partitions[0])
        print("incremental", len(partitions), progress, cursor.fetchall())
        partitions, schema = cursor.adbc_execute_partitions(sql)
        print("incremental, then", len(partitions))
        try:
            cursor.execute("SELECT * FROM plants")
            print("accepted: SELECT * FROM plants")
        except adbc_driver_manager.Error as error:
            print(type(error).__name__, error)

count = "SELECT count(*) FROM animals"
with flight_sql.connect(uri, db_kwargs=login) as connection:
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM animals WHERE name = 'snail'")
        connection.rollback()
        cursor.execute(count)
        print("after rollback", cursor.fetchone())
        cursor.execute("DELETE FROM animals WHERE name = 'snail'")
        connection.commit()
        cursor.execute(count)
        print("after commit", cursor.fetchone())
    connection.commit()

try:
    wrong = {"username": "test", "password": "wrong"}
    with flight_sql.connect(uri, db_kwargs=wrong) as connection:
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM animals")
    print("accepted: a wrong password")
except adbc_driver_manager.Error as error:
    print(type(error).__name__, error)
