// ANCHOR: connect
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_cast::pretty::pretty_format_batches;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::{Action, FlightClient, FlightDescriptor, FlightInfo, Ticket};
use futures::{TryStreamExt, stream};
use tonic::transport::Channel;
// ANCHOR_END: connect

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
    let url = url.unwrap_or_else(|| "http://localhost:8815".to_string());
    let channel = Channel::from_shared(url.clone())?.connect().await?;
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
