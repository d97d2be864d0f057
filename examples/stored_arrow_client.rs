// ANCHOR: upload
use std::error::Error;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_cast::pretty::pretty_format_batches;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::{FlightClient, FlightDescriptor, FlightInfo};
use futures::{TryStreamExt, stream};
use tonic::transport::Endpoint;

/// Uploads `batches` as the dataset `name`.
pub async fn upload(
    client: &mut FlightClient,
    name: &str,
    batches: Vec<RecordBatch>,
) -> Result<(), FlightError> {
    let descriptor = FlightDescriptor::new_path(vec![name.to_string()]);
    let flight_data = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(descriptor))
        .build(stream::iter(batches.into_iter().map(Ok)));
    let _: Vec<_> = client.do_put(flight_data).await?.try_collect().await?;
    Ok(())
}

/// Three small batches of cities.
fn cities() -> Result<Vec<RecordBatch>, Box<dyn Error>> {
    let rows = [
        [("Lyon", 522_250), ("Porto", 231_800)],
        [("Graz", 298_479), ("Turku", 202_250)],
        [("Ghent", 267_709), ("Aarhus", 367_095)],
    ];
    let mut batches = Vec::new();
    for pair in rows {
        let names: ArrayRef = Arc::new(StringArray::from_iter_values(
            pair.iter().map(|(name, _)| *name),
        ));
        let people: ArrayRef =
            Arc::new(Int64Array::from_iter_values(pair.iter().map(|(_, n)| *n)));
        batches.push(RecordBatch::try_from_iter([
            ("city", names),
            ("population", people),
        ])?);
    }
    Ok(batches)
}
// ANCHOR_END: upload

// ANCHOR: download
/// Describes the dataset `name` and reads it.
pub async fn download(
    client: &mut FlightClient,
    name: &str,
) -> Result<(FlightInfo, Vec<RecordBatch>), FlightError> {
    let descriptor = FlightDescriptor::new_path(vec![name.to_string()]);
    let info = client.get_flight_info(descriptor).await?;
    let ticket = info
        .endpoint
        .first()
        .and_then(|endpoint| endpoint.ticket.clone())
        .ok_or_else(|| FlightError::protocol("the flight info has no ticket"))?;
    let batches = client.do_get(ticket).await?.try_collect().await?;
    Ok((info, batches))
}

/// An error as a user should read it: a gRPC status's code and message.
pub fn said(error: FlightError) -> String {
    match error {
        FlightError::Tonic(status) => {
            format!("{:?}: {}", status.code(), status.message())
        }
        other => other.to_string(),
    }
}
// ANCHOR_END: download

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
#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let url = std::env::args().nth(1);
    let url = url.unwrap_or_else(|| "grpc://localhost:8815".to_string());
    let mut client = FlightClient::new(flight_endpoint(&url)?.connect().await?);

    upload(&mut client, "cities.arrow", cities()?).await?;
    println!("Uploaded 3 batches as cities.arrow");
    // ANCHOR_END: upload

    // ANCHOR: download
    let (info, batches) = download(&mut client, "cities.arrow").await?;
    println!("{} rows, {} bytes", info.total_records, info.total_bytes);
    println!("{} batch(es) back", batches.len());
    println!("{}", pretty_format_batches(&batches)?);
    // ANCHOR_END: download

    // ANCHOR: errors
    for name in ["nowhere.arrow", "../cities.arrow"] {
        match download(&mut client, name).await {
            Ok(_) => println!("{name}: read"),
            Err(error) => println!("{}", said(error)),
        }
    }
    // ANCHOR_END: errors
    Ok(())
}
