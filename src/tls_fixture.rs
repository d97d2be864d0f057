//! The TLS server of the chapter "Securing connections with TLS" as the
//! book's blocks meet it: `serve` writes the certificates of step 1 to
//! `certs/` in the current folder (each block runs in a folder of its own,
//! which the block's program shares) and serves over TLS with them, as
//! `tls_server --tls certs/server.pem certs/server.key` does.

use std::future::Future;
use std::path::Path;

use tokio::net::TcpListener;
use tonic::transport::ServerTlsConfig;

#[path = "../examples/tls_certificates.rs"]
mod tls_certificates;
#[path = "../examples/tls_server.rs"]
mod tls_server;

use tls_certificates::write_certificates;
use tls_server::{serve_tls, tls_config};

/// Reads `certs/NAME`.
fn read(name: &str) -> Result<Vec<u8>, String> {
    let path = Path::new("certs").join(name);
    std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes the certificates and reads the server's TLS settings from them.
fn prepare(mutual: bool) -> Result<ServerTlsConfig, String> {
    write_certificates(Path::new("certs")).map_err(|e| e.to_string())?;
    let ca = if mutual { Some(read("ca.pem")?) } else { None };
    Ok(tls_config(
        &read("server.pem")?,
        &read("server.key")?,
        ca.as_deref(),
    ))
}

/// Serves over TLS, with a server certificate only.
pub fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = Result<(), String>> + Send + 'static {
    serve_with(listener, shutdown, false)
}

/// Serves over TLS, and requires a client certificate issued by the test
/// authority when `mutual`. The certificates are written before this
/// returns, so a client started right after finds them.
pub fn serve_with(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    mutual: bool,
) -> impl Future<Output = Result<(), String>> + Send + 'static {
    let prepared = prepare(mutual);
    async move {
        let tls = prepared?;
        serve_tls(listener, tls, shutdown)
            .await
            .map_err(|e| e.to_string())
    }
}
