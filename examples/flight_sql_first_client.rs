// ANCHOR: uses
use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;
use arrow_cast::display::array_value_to_string;
use arrow_cast::pretty::pretty_format_batches;
use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetTables, SqlInfo};
use arrow_flight::{FlightInfo, IpcMessage};
use arrow_schema::Schema;
use futures::TryStreamExt;
use tonic::transport::{Channel, Endpoint};
// ANCHOR_END: uses

// ANCHOR: fetch
/// The batches of every endpoint of `info`, one endpoint after the other.
async fn fetch(
    client: &mut FlightSqlServiceClient<Channel>,
    info: FlightInfo,
) -> Result<Vec<RecordBatch>, Box<dyn std::error::Error>> {
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.ok_or("an endpoint without a ticket")?;
        let stream = client.do_get(ticket).await?;
        batches.extend(stream.try_collect::<Vec<RecordBatch>>().await?);
    }
    Ok(batches)
}
// ANCHOR_END: fetch

// ANCHOR: refused
/// A failed call as its gRPC code and the server's message.
fn describe(error: &FlightError) -> String {
    match error {
        FlightError::Tonic(status) => {
            format!("{:?}: {}", status.code(), status.message())
        }
        other => other.to_string(),
    }
}
// ANCHOR_END: refused

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
    client.handshake("test", "password").await?;
    println!("logged in");
    // ANCHOR_END: login

    // ANCHOR: info
    let wanted = vec![
        SqlInfo::FlightSqlServerName,
        SqlInfo::FlightSqlServerReadOnly,
        SqlInfo::FlightSqlServerTransaction,
    ];
    let info = client.get_sql_info(wanted).await?;
    for batch in fetch(&mut client, info).await? {
        let names = batch.column(0).as_primitive::<UInt32Type>();
        let values = batch.column(1).as_union();
        for (row, name) in names.values().iter().enumerate() {
            let name = SqlInfo::try_from(*name as i32)?;
            let value = array_value_to_string(&values.value(row), 0)?;
            println!("{name:?}: {value}");
        }
    }
    // ANCHOR_END: info

    // ANCHOR: tables
    let tables = CommandGetTables {
        include_schema: true,
        ..Default::default()
    };
    let info = client.get_tables(tables).await?;
    for batch in fetch(&mut client, info).await? {
        let schemas = batch.column_by_name("db_schema_name").ok_or("no schemas")?;
        let tables = batch.column_by_name("table_name").ok_or("no names")?;
        let columns = batch.column_by_name("table_schema").ok_or("no columns")?;
        for row in 0..batch.num_rows() {
            let schema = array_value_to_string(schemas, row)?;
            let table = array_value_to_string(tables, row)?;
            println!("{schema}.{table}");
            let ipc = columns.as_binary::<i32>().value(row).to_vec();
            for field in Schema::try_from(IpcMessage(ipc.into()))?.fields() {
                println!("  {}: {}", field.name(), field.data_type());
            }
        }
    }
    // ANCHOR_END: tables

    // ANCHOR: query
    let sql = "SELECT * FROM animals ORDER BY size";
    let info = client.execute(sql.to_string(), None).await?;
    let batches = fetch(&mut client, info).await?;
    println!("{sql}\n{}", pretty_format_batches(&batches)?);
    // ANCHOR_END: query

    // ANCHOR: prepared
    let sql = "SELECT name, legs FROM animals WHERE legs > 2 ORDER BY legs";
    let mut prepared = client.prepare(sql.to_string(), None).await?;
    println!("{sql}");
    for field in prepared.dataset_schema()?.fields() {
        println!("  {}: {}", field.name(), field.data_type());
    }
    let info = prepared.execute().await?;
    let batches = fetch(&mut client, info).await?;
    println!("{}", pretty_format_batches(&batches)?);
    prepared.close().await?;
    // ANCHOR_END: prepared

    // ANCHOR: refused
    let refused = [
        "SELECT * FROM plants",
        "DELETE FROM animals",
        "SELECT * FROM animals LIMIT ?",
    ];
    for sql in refused {
        match client.execute(sql.to_string(), None).await {
            Err(error) => println!("{sql} => {}", describe(&error)),
            Ok(_) => return Err(format!("{sql:?} was accepted").into()),
        }
    }
    let mut stranger = FlightSqlServiceClient::new(channel);
    match stranger.execute("SELECT 1".to_string(), None).await {
        Err(error) => println!("without logging in => {}", describe(&error)),
        Ok(_) => return Err("a call without a login was accepted".into()),
    }
    // ANCHOR_END: refused
    Ok(())
}
