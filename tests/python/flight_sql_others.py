"""Two more Python clients against the Flight SQL recipe's SQLite server:
pandas.read_sql over an ADBC connection, and flightsql-dbapi (a DB-API
built on pyarrow's Flight client).

Usage: python flight_sql_others.py grpc://HOST:PORT
"""

import sys
import urllib.parse

import adbc_driver_flightsql.dbapi as flight_sql
import pandas
from flightsql import FlightSQLClient, connect

uri = sys.argv[1]
login = {"username": "test", "password": "password"}

with flight_sql.connect(uri, db_kwargs=login, autocommit=True) as connection:
    frame = pandas.read_sql(
        "SELECT name, legs, size FROM animals WHERE legs = 4 ORDER BY size", connection
    )
    print("pandas", list(frame.columns), [str(t) for t in frame.dtypes])
    print("pandas", frame.to_dict("list"))

address = urllib.parse.urlparse(uri)
client = FlightSQLClient(
    host=address.hostname,
    port=address.port,
    user="test",
    password="password",
    insecure=True,
)
connection = connect(client)
cursor = connection.cursor()
cursor.execute("SELECT name, legs FROM animals WHERE legs > ? ORDER BY name", [4])
print("flightsql-dbapi", [column[0] for column in cursor.description])
print("flightsql-dbapi", cursor.fetchall())
cursor.execute("SELECT count(*) AS n FROM sightings")
print("flightsql-dbapi", cursor.fetchall())
print("flightsql-dbapi columns", [c["name"] for c in connection.flightsql_get_columns("animals")])
connection.close()
