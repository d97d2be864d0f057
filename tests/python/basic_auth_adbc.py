"""The ADBC Flight SQL driver logging in to the user/password recipe's
server. The server is no Flight SQL server, but the driver's login is the
Handshake of that recipe, with Basic credentials sent without base64 padding.

Usage: python basic_auth_adbc.py grpc://HOST:PORT

Prints "logged in", or the error, for the right password and a wrong one.
"""

import sys
import warnings

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager

warnings.simplefilter("ignore")
for password in ["password", "wrong"]:
    try:
        with flight_sql.connect(sys.argv[1], db_kwargs={"username": "test", "password": password}):
            print("logged in")
    except adbc_driver_manager.Error as error:
        print(type(error).__name__, error)
