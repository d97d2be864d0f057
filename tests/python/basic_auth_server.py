"""A pyarrow Flight server for the user/password recipe.

It is the server of the Python cookbook page "Authentication with
user/password": an echo service whose calls are checked by a server
middleware, plus a do-nothing auth handler so that the Handshake call is
answered. It listens on a free port of 127.0.0.1, prints

    Serving on grpc://127.0.0.1:PORT

once it accepts calls, and stops when its standard input is closed or when
it gets SIGTERM or SIGINT. tests/recipes/pyarrow_interop.rs starts it.
"""

import base64
import secrets
import signal
import sys
import threading

import pyarrow.flight as flight


class EchoServer(flight.FlightServerBase):
    """Answers every action with its type and its body."""

    def do_action(self, context, action):
        return [action.type.encode("utf-8"), action.body]


class BasicAuthServerMiddlewareFactory(flight.ServerMiddlewareFactory):
    """Checks the "authorization" header of every call.

    "Basic base64(user:password)" logs in and gets a new bearer token;
    "Bearer <token>" must carry a token handed out earlier.
    """

    def __init__(self, passwords):
        self.passwords = passwords
        self.users_by_token = {}

    def start_call(self, info, headers):
        # Header names arrive in lower case, but look case-insensitively.
        values = next(
            (v for k, v in headers.items() if k.lower() == "authorization"), None
        )
        if not values:
            raise flight.FlightUnauthenticatedError("No credentials supplied")
        scheme, _, credentials = values[0].partition(" ")

        if scheme == "Basic":
            user, _, password = (
                base64.b64decode(credentials).decode("utf-8").partition(":")
            )
            if not password or self.passwords.get(user) != password:
                raise flight.FlightUnauthenticatedError(
                    "Unknown user or invalid password"
                )
            token = secrets.token_urlsafe(32)
            self.users_by_token[token] = user
            return BasicAuthServerMiddleware(token)

        if scheme == "Bearer":
            if credentials not in self.users_by_token:
                raise flight.FlightUnauthenticatedError("Invalid token")
            return BasicAuthServerMiddleware(credentials)

        raise flight.FlightUnauthenticatedError("No credentials supplied")


class BasicAuthServerMiddleware(flight.ServerMiddleware):
    """Sends the bearer token of the call back to the client."""

    def __init__(self, token):
        self.token = token

    def sending_headers(self):
        return {"authorization": f"Bearer {self.token}"}


class NoOpAuthHandler(flight.ServerAuthHandler):
    """Lets the Handshake call through; the middleware does the checking."""

    def authenticate(self, outgoing, incoming):
        pass

    def is_valid(self, token):
        return ""


def main():
    server = EchoServer(
        location="grpc://127.0.0.1:0",
        auth_handler=NoOpAuthHandler(),
        middleware={
            "basic": BasicAuthServerMiddlewareFactory({"test": "password"}),
        },
    )

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def watch_stdin():
        # read() returns once the parent closes the pipe (or dies).
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()

    # The constructor has already started the server.
    print(f"Serving on grpc://127.0.0.1:{server.port}", flush=True)
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.wait()


if __name__ == "__main__":
    main()
