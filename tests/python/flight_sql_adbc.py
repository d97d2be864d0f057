"""The ADBC Flight SQL driver, the reference Flight SQL client, against the
Flight SQL recipe's server: log in with a user name and password, run
statements, and see a refused one and a refused login.

Usage: python flight_sql_adbc.py grpc://HOST:PORT
"""

import sys

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager

uri = sys.argv[1]
login = {"username": "test", "password": "password"}

with flight_sql.connect(uri, db_kwargs=login) as connection:
    with connection.cursor() as cursor:
        for sql in [
            "SELECT * FROM animals",
            "SELECT name, size FROM animals WHERE size > 50",
            "SELECT COUNT(*) FROM animals",
        ]:
            cursor.execute(sql)
            table = cursor.fetch_arrow_table()
            print(table.column_names, table.to_pydict())
        try:
            cursor.execute("SELECT * FROM plants")
            print("accepted: SELECT * FROM plants")
        except adbc_driver_manager.Error as error:
            print(type(error).__name__, error)

try:
    wrong = {"username": "test", "password": "wrong"}
    with flight_sql.connect(uri, db_kwargs=wrong) as connection:
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM animals")
    print("accepted: a wrong password")
except adbc_driver_manager.Error as error:
    print(type(error).__name__, error)
