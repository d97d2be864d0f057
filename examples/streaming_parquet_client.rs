// ANCHOR: upload
use std::error::Error;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::{FlightClient, FlightDescriptor};
use futures::{Stream, TryStreamExt, stream};
use tonic::transport::Endpoint;

const NUM_BATCHES: usize = 1024;
const ROWS_PER_BATCH: usize = 4096;

/// A client of the server at `url` that lets the server send it HTTP/2
/// frames of up to 1 MiB rather than 16 KiB; what it sends is framed as the
/// server asks.
pub async fn connect(url: String) -> Result<FlightClient, Box<dyn Error>> {
    let channel = flight_endpoint(&url)?
        .max_frame_size(1024 * 1024)
        .connect()
        .await?;
    Ok(FlightClient::new(channel))
}

/// Uploads the batches of `batches` as the dataset `name`, one at a time
/// as the stream yields them.
pub async fn upload_stream(
    client: &mut FlightClient,
    name: &str,
    batches: impl Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static,
) -> Result<(), FlightError> {
    let descriptor = FlightDescriptor::new_path(vec![name.to_string()]);
    let flight_data = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(descriptor))
        .build(batches);
    let results = client.do_put(flight_data).await?;
    let _: Vec<_> = results.try_collect().await?;
    Ok(())
}
// ANCHOR_END: upload

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

// ANCHOR: read
/// Reads the dataset `name` back one batch at a time, and counts its rows.
pub async fn count_rows(
    client: &mut FlightClient,
    name: &str,
) -> Result<usize, FlightError> {
    let descriptor = FlightDescriptor::new_path(vec![name.to_string()]);
    let info = client.get_flight_info(descriptor).await?;
    let ticket = info
        .endpoint
        .first()
        .and_then(|endpoint| endpoint.ticket.clone())
        .ok_or_else(|| FlightError::protocol("the flight info has no ticket"))?;

    let mut batches = client.do_get(ticket).await?;
    let mut total_rows = 0;
    while let Some(batch) = batches.try_next().await? {
        total_rows += batch.num_rows();
    }
    Ok(total_rows)
}
// ANCHOR_END: read

// ANCHOR: upload
#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let url = std::env::args().nth(1);
    let url = url.unwrap_or_else(|| "grpc://localhost:8815".to_string());
    let mut client = connect(url).await?;

    let ints = Int64Array::from_iter_values(0..ROWS_PER_BATCH as i64);
    let batch = RecordBatch::try_from_iter([("ints", Arc::new(ints) as ArrayRef)])?;
    let batches = stream::iter((0..NUM_BATCHES).map(move |_| Ok(batch.clone())));
    upload_stream(&mut client, "streamed.parquet", batches).await?;
    println!("Uploaded {NUM_BATCHES} batches of {ROWS_PER_BATCH} rows");
    // ANCHOR_END: upload

    // ANCHOR: read
    let total_rows = count_rows(&mut client, "streamed.parquet").await?;
    let expected = NUM_BATCHES * ROWS_PER_BATCH;
    println!("Got {total_rows} rows total, expected {expected}");
    // ANCHOR_END: read
    Ok(())
}
