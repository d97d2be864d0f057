"""Follows the location of a dataset's endpoint, as pyarrow's users do
behind a proxy: asks the server at URL (argv[1]) for the flight info of
the dataset NAME (argv[2]), prints the endpoint's locations, then fetches
the dataset from the first location on a connection of its own."""

import sys

import pyarrow.flight as flight


def main():
    url, name = sys.argv[1], sys.argv[2]
    client = flight.connect(url)
    info = client.get_flight_info(flight.FlightDescriptor.for_path(name))
    client.close()
    endpoint = info.endpoints[0]
    locations = [location.uri.decode() for location in endpoint.locations]
    print(f"locations: {locations}", flush=True)
    there = flight.connect(endpoint.locations[0])
    table = there.do_get(endpoint.ticket).read_all()
    print(f"rows: {table.num_rows}", flush=True)


if __name__ == "__main__":
    main()
