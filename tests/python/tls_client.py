"""A pyarrow client of the TLS chapter's server.

Usage: tls_client.py grpc+tls://HOST:PORT CAFILE [CERTFILE KEYFILE]

Trusts CAFILE, shows the client certificate CERTFILE with KEYFILE if given
(mutual TLS), pushes the animals of the Python cookbook and prints the name
the server knows the client by.
"""

import sys

import pyarrow as pa
import pyarrow.flight as flight


def main():
    location, ca = sys.argv[1], sys.argv[2]
    kwargs = {"tls_root_certs": open(ca, "rb").read()}
    if len(sys.argv) > 3:
        kwargs["cert_chain"] = open(sys.argv[3], "rb").read()
        kwargs["private_key"] = open(sys.argv[4], "rb").read()
    client = flight.FlightClient(location, **kwargs)
    table = pa.table({"Animal": ["Dog", "Cat", "Mouse"], "Size": ["Big", "Small", "Tiny"]})
    writer, _ = client.do_put(flight.FlightDescriptor.for_path("AnimalData"), table.schema)
    writer.write_table(table)
    writer.close()
    name = list(client.do_action(flight.Action("whoami", b"")))[0].body.to_pybytes().decode()
    print(f"pushed AnimalData; the server knows this client as: {name}")


if __name__ == "__main__":
    main()
