"""A pyarrow Flight client for the user/password recipe.

It does what the client on the Python cookbook page "Authentication with
user/password" does, against the server at the URL given as the only
argument, and prints one line per step for tests/recipes/pyarrow_interop.rs:

    token pair: authorization Bearer <token>
    echo: b'echo'
    echo: b'Hello, world!'
    no credentials: <error message>
    wrong password: <error message>

Any unexpected outcome ends the script with a non-zero exit status.
"""

import sys

import pyarrow.flight as flight


def fail(message):
    print(f"FAILED: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def main():
    if len(sys.argv) != 2:
        fail(f"usage: {sys.argv[0]} grpc://HOST:PORT")
    client = flight.connect(sys.argv[1])

    # Log in: pyarrow sends "Basic base64(user:password)" in a Handshake
    # call and returns the server's "authorization" header as a pair.
    token_pair = client.authenticate_basic_token(b"test", b"password")
    if not (isinstance(token_pair, tuple) and len(token_pair) == 2):
        fail(f"expected a (name, value) pair, got {token_pair!r}")
    name, value = token_pair
    print(f"token pair: {name.decode()} {value.decode()}", flush=True)

    # An authenticated call carries the pair as a call header.
    action = flight.Action("echo", b"Hello, world!")
    with_token = flight.FlightCallOptions(headers=[token_pair])
    for result in client.do_action(action, options=with_token):
        print(f"echo: {result.body.to_pybytes()!r}", flush=True)

    # Without the header the server refuses the call.
    try:
        list(client.do_action(action))
    except flight.FlightUnauthenticatedError as error:
        print(f"no credentials: {error}", flush=True)
    else:
        fail("the call without credentials succeeded")

    # A login with an unknown user is refused too.
    try:
        client.authenticate_basic_token(b"invalid", b"password")
    except flight.FlightUnauthenticatedError as error:
        print(f"wrong password: {error}", flush=True)
    else:
        fail("the login with wrong credentials succeeded")

    client.close()


if __name__ == "__main__":
    main()
