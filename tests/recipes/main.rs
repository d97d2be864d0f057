//! The recipes' tests, one module per recipe, in one test program: the
//! fixture (`tests/common`) and each example program are compiled once, and
//! cargo's test runner runs the tests of all recipes in parallel, four per
//! core (`four_per_core.rs`). The tests that need the whole machine
//! (`reliability`, `header_limit`, `rendered_book`, `copy_paste`) are test
//! programs of their own, run after this one, alone.
//!
//! To fold in a test file `tests/NEW.rs` (written as its own `[[test]]`),
//! add the line `#[path = "../NEW.rs"] mod NEW;` below and drop its
//! `[[test]]` entry from `recipes/Cargo.toml` (it keeps its own copies of
//! `common` and the examples; `git mv` it here and write `use crate::X;` for
//! its `mod X;` lines to share them).

mod basic_auth;
mod copies;
mod dependencies;
mod exchange;
mod exchange_pyarrow;
mod flight_sql;
mod flight_sql_adbc;
mod flight_sql_adbc_defaults;
mod flight_sql_first;
mod flight_sql_login;
mod flight_sql_tools;
mod flight_urls;
mod grpc_options;
mod grpc_options_pyarrow;
mod health;
mod key_value;
mod long_query;
mod long_query_pyarrow;
mod many_servers;
mod middleware;
mod parquet_storage;
mod parquet_storage_pyarrow;
mod pyarrow_interop;
mod result_metadata;
mod shards;
mod stored_arrow;
mod tls;
mod tracing;
mod tracing_pyarrow;
mod wire;

#[allow(dead_code)]
#[path = "../../src/book.rs"]
mod book;
#[path = "../common/mod.rs"]
mod common;
#[path = "../four_per_core.rs"]
mod four_per_core;

// The example programs, as modules the tests call into.
#[allow(dead_code)]
#[path = "../../examples/basic_auth_client.rs"]
mod basic_auth_client;
#[allow(dead_code)]
#[path = "../../examples/basic_auth_server.rs"]
mod basic_auth_server;
#[allow(dead_code)]
#[path = "../../examples/exchange_client.rs"]
mod exchange_client;
#[allow(dead_code)]
#[path = "../../examples/exchange_server.rs"]
mod exchange_server;
#[allow(dead_code)]
#[path = "../../examples/flight_sql_client.rs"]
mod flight_sql_client;
#[allow(dead_code)]
#[path = "../../examples/flight_sql_first_server.rs"]
mod flight_sql_first_server;
#[allow(dead_code)]
#[path = "../../examples/flight_sql_server/main.rs"]
mod flight_sql_server;
#[allow(dead_code)]
#[path = "../../examples/grpc_options_client.rs"]
mod grpc_options_client;
#[allow(dead_code)]
#[path = "../../examples/grpc_options_server.rs"]
mod grpc_options_server;
#[allow(dead_code)]
#[path = "../../examples/health_client.rs"]
mod health_client;
#[allow(dead_code)]
#[path = "../../examples/health_server.rs"]
mod health_server;
#[allow(dead_code)]
#[path = "../../examples/key_value_server.rs"]
mod key_value_server;
#[allow(dead_code)]
#[path = "../../examples/long_query_client.rs"]
mod long_query_client;
#[allow(dead_code)]
#[path = "../../examples/long_query_server.rs"]
mod long_query_server;
#[allow(dead_code)]
#[path = "../../examples/many_servers_client.rs"]
mod many_servers_client;
#[allow(dead_code)]
#[path = "../../examples/metadata_client.rs"]
mod metadata_client;
#[allow(dead_code)]
#[path = "../../examples/metadata_server.rs"]
mod metadata_server;
#[allow(dead_code)]
#[path = "../../examples/middleware_client.rs"]
mod middleware_client;
#[allow(dead_code)]
#[path = "../../examples/middleware_server.rs"]
mod middleware_server;
#[allow(dead_code)]
#[path = "../../examples/parquet_storage_client.rs"]
mod parquet_storage_client;
#[allow(dead_code)]
#[path = "../../examples/parquet_storage_names.rs"]
mod parquet_storage_names;
#[allow(dead_code)]
#[path = "../../examples/parquet_storage_server.rs"]
mod parquet_storage_server;
#[allow(dead_code)]
#[path = "../../examples/shard_client.rs"]
mod shard_client;
#[allow(dead_code)]
#[path = "../../examples/shard_server.rs"]
mod shard_server;
#[allow(dead_code)]
#[path = "../../examples/stored_arrow_client.rs"]
mod stored_arrow_client;
#[allow(dead_code)]
#[path = "../../examples/stored_arrow_server.rs"]
mod stored_arrow_server;
#[allow(dead_code)]
#[path = "../../examples/streaming_parquet_client.rs"]
mod streaming_parquet_client;
#[allow(dead_code)]
#[path = "../../examples/streaming_parquet_server.rs"]
mod streaming_parquet_server;
#[allow(dead_code)]
#[path = "../../examples/tls_certificates.rs"]
mod tls_certificates;
#[allow(dead_code)]
#[path = "../../examples/tls_client.rs"]
mod tls_client;
#[allow(dead_code)]
#[path = "../../examples/tls_server.rs"]
mod tls_server;
#[allow(dead_code)]
#[path = "../../examples/tracing_echo.rs"]
mod tracing_echo;
#[allow(dead_code)]
#[path = "../../examples/wire_client.rs"]
mod wire_client;
#[allow(dead_code)]
#[path = "../../examples/wire_server.rs"]
mod wire_server;
