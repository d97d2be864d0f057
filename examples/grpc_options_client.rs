// ANCHOR: uses
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{Int64Array, RecordBatch};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{Action, FlightClient, FlightDescriptor, Ticket};
use arrow_schema::{DataType, Field, Schema};
use futures::{StreamExt, TryStreamExt, stream};
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};
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

/// The largest message this client accepts once it raises its limit: 64 MiB.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

// ANCHOR: channel
/// Connects with explicit time limits and HTTP/2 keep-alive.
pub async fn connect(url: String) -> Result<Channel, Box<dyn std::error::Error>> {
    let channel = flight_endpoint(&url)?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .tcp_nodelay(true)
        .connect()
        .await?;
    Ok(channel)
}
// ANCHOR_END: channel

// ANCHOR: rows
/// Downloads the rows of `ticket` and counts rows and record batches.
pub async fn count_rows(
    client: &mut FlightClient,
    ticket: &str,
) -> Result<String, FlightError> {
    let batches: Vec<RecordBatch> = client
        .do_get(Ticket::new(ticket.to_string()))
        .await?
        .try_collect()
        .await?;
    let rows: usize = batches.iter().map(|batch| batch.num_rows()).sum();
    Ok(format!("{rows} rows in {} batches", batches.len()))
}
// ANCHOR_END: rows

// ANCHOR: upload
/// A record batch of `rows` numbers, 8 bytes each.
pub fn numbers(rows: usize) -> Result<RecordBatch, FlightError> {
    let schema = Schema::new(vec![Field::new("n", DataType::Int64, false)]);
    let values = Int64Array::from_iter_values((0..rows as i64).map(|n| n % 1000));
    Ok(RecordBatch::try_new(
        Arc::new(schema),
        vec![Arc::new(values)],
    )?)
}

/// Uploads one batch of `rows` numbers, in messages of at most
/// `message_size` bytes, and returns what the server says it received.
pub async fn upload(
    client: &mut FlightServiceClient<Channel>,
    rows: usize,
    message_size: usize,
) -> Result<String, FlightError> {
    let batches = stream::iter([numbers(rows)]);
    let descriptor = FlightDescriptor::new_path(vec!["numbers".to_string()]);
    let flight_data: Vec<_> = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(descriptor))
        .with_max_flight_data_size(message_size)
        .build(batches)
        .try_collect()
        .await?;
    let mut results = client.do_put(stream::iter(flight_data)).await?.into_inner();
    match results.next().await {
        Some(result) => {
            Ok(String::from_utf8_lossy(&result?.app_metadata).into_owned())
        }
        None => Err(FlightError::protocol("the server sent no PutResult")),
    }
}
// ANCHOR_END: upload

// ANCHOR: headers
/// Asks the server to sleep `ms` milliseconds, with an `x-filler` header of
/// `filler` bytes on the call.
pub async fn sleep(
    client: &mut FlightServiceClient<Channel>,
    ms: &str,
    filler: usize,
) -> Result<String, tonic::Status> {
    let mut request = Request::new(Action::new("sleep", ms.to_string()));
    let value = MetadataValue::try_from("x".repeat(filler))
        .map_err(|_| tonic::Status::invalid_argument("not a header value"))?;
    request.metadata_mut().insert("x-filler", value);
    let mut results = client.do_action(request).await?.into_inner();
    let mut text = String::new();
    while let Some(result) = results.message().await? {
        text.push_str(&String::from_utf8_lossy(&result.body));
    }
    Ok(text)
}
// ANCHOR_END: headers

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args().nth(1);
    let url = url.unwrap_or_else(|| "grpc://localhost:8817".to_string());
    // ANCHOR: channel
    let channel = connect(url).await?;
    // ANCHOR_END: channel

    // ANCHOR: too_large
    let mut client = FlightClient::new(channel.clone());
    match count_rows(&mut client, "1000000").await {
        Err(FlightError::Tonic(status)) if status.code() == Code::OutOfRange => {
            println!("{:?}: {}", status.code(), status.message());
        }
        Err(error) => return Err(error.into()),
        Ok(_) => return Err("expected the download to be too large".into()),
    }
    // ANCHOR_END: too_large

    // ANCHOR: raised
    let inner = FlightServiceClient::new(channel.clone())
        .max_decoding_message_size(MAX_MESSAGE_SIZE);
    let mut client = FlightClient::new_from_inner(inner);
    println!("{}", count_rows(&mut client, "1000000").await?);
    // ANCHOR_END: raised

    // ANCHOR: upload
    let mut client = FlightServiceClient::new(channel.clone());
    println!("{}", upload(&mut client, 1_000_000, 2 * 1024 * 1024).await?);
    println!("{}", upload(&mut client, 1_000_000, usize::MAX).await?);
    match upload(&mut client, 10_000_000, usize::MAX).await {
        Err(FlightError::Tonic(status))
            if status.code() == Code::ResourceExhausted =>
        {
            println!("{:?}: {}", status.code(), status.message());
        }
        Err(error) => return Err(error.into()),
        Ok(_) => return Err("expected the upload to be too large".into()),
    }
    // ANCHOR_END: upload

    // ANCHOR: gzip
    let mut client = FlightServiceClient::new(channel.clone())
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    println!("{}", upload(&mut client, 1_000_000, 2 * 1024 * 1024).await?);
    // ANCHOR_END: gzip

    // ANCHOR: deadline
    let mut client = FlightServiceClient::new(channel.clone());
    let mut request = Request::new(Action::new("sleep", "100"));
    request.set_timeout(Duration::from_secs(5));
    let mut results = client.do_action(request).await?.into_inner();
    while let Some(result) = results.message().await? {
        println!("{}", String::from_utf8_lossy(&result.body));
    }

    let mut request = Request::new(Action::new("sleep", "5000"));
    request.set_timeout(Duration::from_millis(200));
    match client.do_action(request).await {
        Err(status) if status.code() == Code::Cancelled => {
            println!("{:?}: {}", status.code(), status.message());
        }
        Err(status) => return Err(status.into()),
        Ok(_) => return Err("expected the call to run out of time".into()),
    }
    // ANCHOR_END: deadline

    // ANCHOR: headers
    let mut sleeper = FlightServiceClient::new(channel.clone());
    let nap = tokio::spawn(async move { sleep(&mut sleeper, "500", 0).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    for kib in [8, 64, 1000] {
        match sleep(&mut client, "0", kib * 1024).await {
            Ok(text) => println!("{kib} KiB of headers: {text}"),
            Err(status) => {
                println!("{kib} KiB: {:?}: {}", status.code(), status.message())
            }
        }
    }
    println!("the call in flight: {}", nap.await??);
    // ANCHOR_END: headers
    Ok(())
}
