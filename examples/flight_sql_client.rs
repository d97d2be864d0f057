// ANCHOR: uses
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;
use arrow_array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_cast::display::array_value_to_string;
use arrow_cast::pretty::pretty_format_batches;
use arrow_flight::FlightInfo;
use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetTables,
    CommandStatementIngest, EndTransaction, SqlInfo, SqlSupportedTransaction,
    TableDefinitionOptions, TableExistsOption, TableNotExistOption,
};
use arrow_schema::{ArrowError, DataType, Field, Schema};
use futures::TryStreamExt;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
// ANCHOR_END: uses

// ANCHOR: copy_flight_endpoint
/// The tonic endpoint of a Flight URL, the form servers print and
/// locations use: `grpc://`, `grpc+tcp://` and `http://` are plain text,
/// `grpc+tls://` and `https://` TLS. Other schemes are refused.
pub fn flight_endpoint(url: &str) -> Result<Endpoint, String> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let http = match scheme.to_ascii_lowercase().as_str() {
        "grpc" | "grpc+tcp" | "http" => "http",
        "grpc+tls" | "https" => "https",
        "arrow-flight-reuse-connection" => {
            return Err(format!(
                "{url:?} names no server: it means the connection that gave \
                 out the endpoint"
            ));
        }
        _ => {
            return Err(format!(
                "{url:?} is not a Flight URL this client can use: use \
                 grpc://, grpc+tcp://, grpc+tls://, http:// or https://"
            ));
        }
    };
    Endpoint::from_shared(format!("{http}://{rest}"))
        .map_err(|e| format!("{url:?}: {e}"))
}
// ANCHOR_END: copy_flight_endpoint

// ANCHOR: login
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args().nth(1);
    let url = url.unwrap_or_else(|| "grpc://localhost:8819".to_string());
    let channel = flight_endpoint(&url)?.connect().await?;
    let mut client = FlightSqlServiceClient::new(channel.clone());

    let user = client.handshake("test", "password").await?;
    println!("logged in as {}", String::from_utf8_lossy(&user));
    // ANCHOR_END: login

    // ANCHOR: info
    let wanted = vec![
        SqlInfo::FlightSqlServerName,
        SqlInfo::FlightSqlServerReadOnly,
        SqlInfo::FlightSqlServerTransaction,
    ];
    let info = client.get_sql_info(wanted).await?;
    let answers = fetch(&mut client, info).await?;
    for line in sql_info_lines(&answers)? {
        println!("{line}");
    }
    // ANCHOR_END: info

    // ANCHOR: tables
    let tables = CommandGetTables {
        include_schema: true,
        ..Default::default()
    };
    let info = client.get_tables(tables).await?;
    for batch in fetch(&mut client, info).await? {
        let batch = batch.project(&[1, 2, 3])?;
        println!("{}", pretty_format_batches(&[batch])?);
    }
    let keys = CommandGetPrimaryKeys {
        table: "animals".to_string(),
        ..Default::default()
    };
    let info = client.get_primary_keys(keys).await?;
    let keys = fetch(&mut client, info).await?;
    println!("{}", pretty_format_batches(&keys)?);
    let imported = CommandGetImportedKeys {
        table: "sightings".to_string(),
        ..Default::default()
    };
    let info = client.get_imported_keys(imported).await?;
    let batches = fetch(&mut client, info).await?;
    let mut keys = Vec::new();
    for batch in batches {
        keys.push(batch.project(&[2, 3, 6, 7])?);
    }
    println!("{}", pretty_format_batches(&keys)?);
    // ANCHOR_END: tables

    // ANCHOR: queries
    for sql in [
        "SELECT * FROM animals WHERE size > 50",
        "SELECT place, length(photo) AS bytes FROM sightings ORDER BY id",
        "SELECT count(*) AS animals, avg(legs) AS legs FROM animals",
    ] {
        println!("{sql}");
        let batches = query(&mut client, sql).await?;
        println!("{}", pretty_format_batches(&batches)?);
    }
    // ANCHOR_END: queries

    // ANCHOR: update
    let sql = "INSERT INTO animals VALUES ('snail', 0, 3), ('bee', 6, 1.5)";
    let changed = client.execute_update(sql.to_string(), None).await?;
    println!("{sql} => {changed} rows");
    let sql = "DELETE FROM animals WHERE name IN ('snail', 'bee')";
    let changed = client.execute_update(sql.to_string(), None).await?;
    println!("{sql} => {changed} rows");
    // ANCHOR_END: update

    // ANCHOR: prepared
    let sql = "SELECT name, size FROM animals WHERE legs = ? ORDER BY size";
    let mut prepared = client.prepare(sql.to_string(), None).await?;
    let parameters = prepared.parameter_schema()?.fields().len();
    println!("{sql}: {parameters} parameter");
    let schema = Arc::new(Schema::new(vec![Field::new(
        "legs",
        DataType::Int64,
        false,
    )]));
    for legs in [4, 2] {
        let values = Arc::new(Int64Array::from(vec![legs]));
        let batch = RecordBatch::try_new(schema.clone(), vec![values])?;
        prepared.set_parameters(batch)?;
        let info = prepared.execute().await?;
        println!("legs = {legs}");
        println!(
            "{}",
            pretty_format_batches(&fetch(&mut client, info).await?)?
        );
    }
    prepared.close().await?;
    // ANCHOR_END: prepared

    // ANCHOR: ingest
    let schema = Arc::new(Schema::new(vec![
        Field::new("animal", DataType::Utf8, false),
        Field::new("weight_kg", DataType::Float64, true),
    ]));
    let animals = Arc::new(StringArray::from(vec!["cat", "dog", "horse"]));
    let weights = Arc::new(Float64Array::from(vec![Some(4.5), None, Some(500.0)]));
    let batch = RecordBatch::try_new(schema, vec![animals, weights])?;
    let create = TableDefinitionOptions {
        if_not_exist: TableNotExistOption::Create as i32,
        if_exists: TableExistsOption::Replace as i32,
    };
    let ingest = CommandStatementIngest {
        table_definition_options: Some(create),
        table: "weights".to_string(),
        ..Default::default()
    };
    let batches = futures::stream::iter([Ok(batch)]);
    let rows = client.execute_ingest(ingest, batches).await?;
    println!("ingested {rows} rows into weights");
    let sql = "SELECT animal, weight_kg FROM weights WHERE weight_kg > 1";
    println!(
        "{}",
        pretty_format_batches(&query(&mut client, sql).await?)?
    );
    // ANCHOR_END: ingest

    // ANCHOR: transaction
    let transaction = client.begin_transaction().await?;
    let sql = "DELETE FROM sightings";
    let deleted = client
        .execute_update(sql.to_string(), Some(transaction.clone()))
        .await?;
    println!("in the transaction: {sql} => {deleted} rows");
    let outside = query(&mut client, "SELECT count(*) AS n FROM sightings").await?;
    println!("outside it:\n{}", pretty_format_batches(&outside)?);
    client
        .end_transaction(transaction, EndTransaction::Rollback)
        .await?;
    let after = query(&mut client, "SELECT count(*) AS n FROM sightings").await?;
    println!("after the rollback:\n{}", pretty_format_batches(&after)?);
    // ANCHOR_END: transaction

    // ANCHOR: refused
    for sql in [
        "SELECT * FROM plants",
        "SELEC * FROM animals",
        "SELECT 1; DROP TABLE animals",
        "ATTACH DATABASE '/tmp/other.db' AS other",
        "VACUUM INTO '/tmp/copy.db'",
        "SELECT load_extension('evil')",
        "PRAGMA journal_mode = delete",
        "INSERT INTO sightings (animal, place) VALUES ('unicorn', 'dream')",
    ] {
        match query(&mut client, sql).await {
            Err(error) => println!("{sql:?} => {}", describe(&error)),
            Ok(_) => return Err(format!("{sql:?} was accepted").into()),
        }
    }
    // ANCHOR_END: refused

    // ANCHOR: unauthenticated
    let mut anonymous = FlightSqlServiceClient::new(channel.clone());
    match query(&mut anonymous, "SELECT * FROM animals").await {
        Err(error) => println!("no login => {}", describe(&error)),
        Ok(_) => return Err("a call without credentials was accepted".into()),
    }
    anonymous.set_token("not-a-token".to_string());
    match query(&mut anonymous, "SELECT * FROM animals").await {
        Err(error) => println!("unknown token => {}", describe(&error)),
        Ok(_) => return Err("an unknown token was accepted".into()),
    }
    anonymous.clear_token();
    match anonymous.handshake("test", "wrong").await {
        Err(error) => println!("wrong password => {}", describe(&error)),
        Ok(_) => return Err("a wrong password was accepted".into()),
    }
    // ANCHOR_END: unauthenticated

    // ANCHOR: relogin
    match client.handshake("admin", "secret").await {
        Err(error) => println!("second handshake => {}", describe(&error)),
        Ok(_) => return Err("the second handshake was accepted".into()),
    }
    client.clear_token();
    let user = client.handshake("admin", "secret").await?;
    println!(
        "after clear_token: logged in as {}",
        String::from_utf8_lossy(&user)
    );
    // ANCHOR_END: relogin
    Ok(())
}

// ANCHOR: info
/// Fetches the batches of every endpoint of `info`.
pub async fn fetch(
    client: &mut FlightSqlServiceClient<Channel>,
    info: FlightInfo,
) -> Result<Vec<RecordBatch>, FlightError> {
    let mut batches = Vec::new();
    for ticket in info.endpoint.into_iter().filter_map(|e| e.ticket) {
        let stream = client.do_get(ticket).await?;
        batches.extend(stream.try_collect::<Vec<_>>().await?);
    }
    Ok(batches)
}
// ANCHOR_END: info

// ANCHOR: info
/// The answers of GetSqlInfo, one line each: the name of what was asked
/// and its value.
fn sql_info_lines(batches: &[RecordBatch]) -> Result<Vec<String>, ArrowError> {
    let mut lines = Vec::new();
    for batch in batches {
        let names = batch.column(0).as_primitive::<UInt32Type>();
        let values = batch.column(1).as_union();
        for row in 0..batch.num_rows() {
            let id = names.value(row) as i32;
            let value = array_value_to_string(&values.value(row), 0)?;
            let (name, value) = match SqlInfo::try_from(id) {
                Ok(SqlInfo::FlightSqlServerTransaction) => {
                    let level = value.parse().unwrap_or(-1);
                    let level = SqlSupportedTransaction::try_from(level)
                        .map_or(value, |l| l.as_str_name().to_string());
                    (SqlInfo::FlightSqlServerTransaction.as_str_name(), level)
                }
                Ok(info) => (info.as_str_name(), value),
                Err(_) => ("(unknown)", value),
            };
            lines.push(format!("{name}: {value}"));
        }
    }
    Ok(lines)
}
// ANCHOR_END: info

// ANCHOR: queries
/// Runs one SQL statement and returns its result.
pub async fn query(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> Result<Vec<RecordBatch>, FlightError> {
    let info = client.execute(sql.to_string(), None).await?;
    fetch(client, info).await
}
// ANCHOR_END: queries

// ANCHOR: refused
/// A failed call in words: its gRPC code and the server's message.
pub fn describe(error: &FlightError) -> String {
    match error {
        FlightError::Tonic(status) => {
            format!("{:?}: {}", status.code(), status.message())
        }
        FlightError::Arrow(ArrowError::IpcError(text)) => {
            handshake_status(text).unwrap_or_else(|| text.clone())
        }
        other => other.to_string(),
    }
}
// ANCHOR_END: refused

// ANCHOR: unauthenticated
/// arrow-flight 60 returns a failed `handshake` as an Arrow error whose
/// text holds the status (`Can't handshake code: '<what the code means>',
/// message: "<the server's message>"`): the code and message, read back.
fn handshake_status(text: &str) -> Option<String> {
    let rest = text.strip_prefix("Can't handshake code: '")?;
    let (meaning, message) = rest.split_once("', message: \"")?;
    let code = (0..=16)
        .map(Code::from)
        .find(|code| code.description() == meaning)?;
    let message = message.split("\", details: ").next()?;
    let message = message.trim_end_matches('"').replace("\\\"", "\"");
    Some(format!("{code:?}: {message}"))
}
// ANCHOR_END: unauthenticated
