//! The test machinery of the Arrow Flight Cookbook for Rust.
//!
//! [`book`] reads the book's markdown the way mdBook shows it and turns each
//! Rust block into a snippet that checks its own output; [`harness`] is the
//! code those snippets run. The book's example programs are compiled in here
//! too (the same files the book shows), so that snippets and tests can start
//! their servers in the background.

pub mod book;
pub mod harness;

#[allow(dead_code)]
#[path = "../examples/basic_auth_server.rs"]
pub mod basic_auth_server;

#[allow(dead_code)]
#[path = "../examples/basic_auth_client.rs"]
pub mod basic_auth_client;

#[allow(dead_code)]
#[path = "../examples/parquet_storage_server.rs"]
pub mod parquet_storage_server;

#[allow(dead_code)]
#[path = "../examples/parquet_storage_client.rs"]
pub mod parquet_storage_client;

#[allow(dead_code)]
#[path = "../examples/streaming_parquet_server.rs"]
pub mod streaming_parquet_server;

#[allow(dead_code)]
#[path = "../examples/streaming_parquet_client.rs"]
pub mod streaming_parquet_client;

#[allow(dead_code)]
#[path = "../examples/grpc_options_server.rs"]
pub mod grpc_options_server;

#[allow(dead_code)]
#[path = "../examples/grpc_options_client.rs"]
pub mod grpc_options_client;

#[allow(dead_code)]
#[path = "../examples/health_server.rs"]
pub mod health_server;

#[allow(dead_code)]
#[path = "../examples/health_client.rs"]
pub mod health_client;

#[allow(dead_code)]
#[path = "../examples/key_value_server.rs"]
pub mod key_value_server;

#[allow(dead_code)]
#[path = "../examples/key_value_client.rs"]
pub mod key_value_client;

#[allow(dead_code)]
#[path = "../examples/middleware_server.rs"]
pub mod middleware_server;

#[allow(dead_code)]
#[path = "../examples/middleware_client.rs"]
pub mod middleware_client;

#[allow(dead_code)]
#[path = "../examples/shard_server.rs"]
pub mod shard_server;

#[allow(dead_code)]
#[path = "../examples/shard_client.rs"]
pub mod shard_client;

#[allow(dead_code)]
#[path = "../examples/tls_certificates.rs"]
pub mod tls_certificates;

#[allow(dead_code)]
#[path = "../examples/tls_server.rs"]
pub mod tls_server;

#[allow(dead_code)]
#[path = "../examples/tls_client.rs"]
pub mod tls_client;

pub mod mtls_fixture;
pub mod tls_fixture;

#[allow(dead_code)]
#[path = "../examples/tracing_echo.rs"]
pub mod tracing_echo;

#[allow(dead_code)]
#[path = "../examples/flight_sql_server.rs"]
pub mod flight_sql_server;

#[allow(dead_code)]
#[path = "../examples/flight_sql_client.rs"]
pub mod flight_sql_client;

#[allow(dead_code)]
#[path = "../examples/exchange_server.rs"]
pub mod exchange_server;

#[allow(dead_code)]
#[path = "../examples/exchange_client.rs"]
pub mod exchange_client;
