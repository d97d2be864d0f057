"""The ADBC Flight SQL driver against the first Flight SQL server, through
its DB-API with the defaults (autocommit off): browse the objects, read a
table's schema, run a query, see a query with a parameter refused, read a
query with pandas.

Usage: python flight_sql_first_adbc.py grpc://HOST:PORT
"""

import sys

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import pandas

uri = sys.argv[1]
login = {"username": "test", "password": "password"}

with flight_sql.connect(uri, db_kwargs=login) as connection:
    print("vendor", connection.adbc_get_info()["vendor_name"])
    for catalog in connection.adbc_get_objects().read_all().to_pylist():
        for schema in catalog["catalog_db_schemas"]:
            for table in schema["db_schema_tables"]:
                columns = [c["column_name"] for c in table["table_columns"]]
                names = (catalog["catalog_name"], schema["db_schema_name"])
                print("table", names, table["table_name"], columns)
    print("schema", connection.adbc_get_table_schema("animals").types)
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM animals WHERE legs > 3 ORDER BY name")
        print("legs > 3", cursor.fetchall())
        for sql, parameters in [
            ("SELECT * FROM plants", None),
            ("SELECT name FROM animals WHERE legs > ?", (3,)),
        ]:
            try:
                cursor.execute(sql, parameters)
            except adbc_driver_manager.Error as error:
                print(type(error).__name__, error)
    frame = pandas.read_sql("SELECT * FROM animals ORDER BY legs", connection)
    print("pandas", [str(t) for t in frame.dtypes], frame["name"].tolist())
    connection.commit()
