// ANCHOR: connect
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_cast::pretty::pretty_format_batches;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::{Action, FlightClient, FlightDescriptor, FlightInfo, Ticket};
use futures::{TryStreamExt, stream};
use tonic::transport::Endpoint;
// ANCHOR_END: connect

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

// ANCHOR: upload
/// Uploads `table` as the dataset `name`. The schema goes first, so a table
/// without rows is stored too.
pub async fn upload(
    client: &mut FlightClient,
    name: &str,
    table: RecordBatch,
) -> Result<(), FlightError> {
    let descriptor = FlightDescriptor::new_path(vec![name.to_string()]);
    let flight_data = FlightDataEncoderBuilder::new()
        .with_schema(table.schema())
        .with_flight_descriptor(Some(descriptor))
        .build(stream::iter([Ok(table)]));
    let results = client.do_put(flight_data).await?;
    let _: Vec<_> = results.try_collect().await?;
    Ok(())
}
// ANCHOR_END: upload

// ANCHOR: flight_info
/// What the server says about a dataset, as the Python recipe prints it.
pub fn describe(info: FlightInfo) -> Result<String, FlightError> {
    let path = info
        .flight_descriptor
        .as_ref()
        .map(|descriptor| descriptor.path.join("/"))
        .unwrap_or_default();
    let mut text = format!(
        "Path: {path} Rows: {} Size: {}\n=== Schema ===\n",
        info.total_records, info.total_bytes
    );
    for field in info.try_decode_schema()?.fields() {
        text.push_str(&format!("{}: {}\n", field.name(), field.data_type()));
    }
    text.push_str("==============");
    Ok(text)
}
// ANCHOR_END: flight_info

// ANCHOR: fetch
/// The ticket of a dataset's first endpoint.
pub fn ticket(info: &FlightInfo) -> Result<Ticket, FlightError> {
    info.endpoint
        .first()
        .and_then(|endpoint| endpoint.ticket.clone())
        .ok_or_else(|| FlightError::protocol("the flight info has no ticket"))
}
// ANCHOR_END: fetch

// ANCHOR: connect
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args().nth(1);
    let url = url.unwrap_or_else(|| "grpc://localhost:8815".to_string());
    let channel = flight_endpoint(&url)?.connect().await?;
    let mut client = FlightClient::new(channel);
    println!("Connected to {url}");
    // ANCHOR_END: connect

    // ANCHOR: upload
    let characters = StringArray::from(vec!["Mario", "Luigi", "Peach"]);
    let table = RecordBatch::try_from_iter([(
        "Character",
        Arc::new(characters) as ArrayRef,
    )])?;
    upload(&mut client, "uploaded.parquet", table).await?;
    println!("Uploaded uploaded.parquet");
    // ANCHOR_END: upload

    // ANCHOR: flight_info
    let descriptor =
        FlightDescriptor::new_path(vec!["uploaded.parquet".to_string()]);
    let info = client.get_flight_info(descriptor).await?;
    println!("{}", describe(info.clone())?);
    // ANCHOR_END: flight_info

    // ANCHOR: fetch
    let batches: Vec<RecordBatch> =
        client.do_get(ticket(&info)?).await?.try_collect().await?;
    println!("{}", pretty_format_batches(&batches)?);
    // ANCHOR_END: fetch

    // ANCHOR: drop
    let action = Action::new("drop_dataset", "uploaded.parquet");
    let results = client.do_action(action).await?;
    let _: Vec<_> = results.try_collect().await?;
    println!("Dropped uploaded.parquet");
    // ANCHOR_END: drop

    // ANCHOR: list
    let infos: Vec<FlightInfo> =
        client.list_flights("").await?.try_collect().await?;
    for info in &infos {
        println!("{}\n", describe(info.clone())?);
    }
    println!("{} datasets", infos.len());
    // ANCHOR_END: list
    Ok(())
}
