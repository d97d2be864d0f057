//! The mutual-TLS server of the chapter "Securing connections with TLS" as
//! the book's blocks meet it: as `src/tls_fixture.rs`, but it requires a
//! client certificate from the test authority (`tls_server --client-ca
//! certs/ca.pem`).

use std::future::Future;

use tokio::net::TcpListener;

#[path = "tls_fixture.rs"]
mod tls_fixture;

/// Serves over mutual TLS, with the certificates of step 1 in `certs/`,
/// written before this returns.
pub fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = Result<(), String>> + Send + 'static {
    tls_fixture::serve_with(listener, shutdown, true)
}
