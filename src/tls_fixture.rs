//! The TLS server of the chapter "Securing connections with TLS" as the
//! book's blocks meet it: `serve` writes the certificates of step 1 to
//! `certs/` in the current folder (each block runs in a folder of its own)
//! and serves over TLS with them, as `tls_server --tls certs/server.pem
//! certs/server.key` does.

use std::future::Future;
use std::path::Path;

use tokio::net::TcpListener;

use crate::tls_certificates::write_certificates;
use crate::tls_server::{serve_tls, tls_config};

/// Reads `certs/NAME`.
fn read(name: &str) -> Result<Vec<u8>, String> {
    let path = Path::new("certs").join(name);
    std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Serves over TLS, with a server certificate only.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    serve_with(listener, shutdown, false).await
}

/// Serves over TLS, and requires a client certificate issued by the test
/// authority when `mutual`.
pub async fn serve_with(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    mutual: bool,
) -> Result<(), String> {
    write_certificates(Path::new("certs")).map_err(|e| e.to_string())?;
    let ca = if mutual { Some(read("ca.pem")?) } else { None };
    let tls = tls_config(&read("server.pem")?, &read("server.key")?, ca.as_deref());
    serve_tls(listener, tls, shutdown)
        .await
        .map_err(|e| e.to_string())
}
