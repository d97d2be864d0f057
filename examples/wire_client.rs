// ANCHOR: uses
use std::error::Error;
use std::sync::Arc;

use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, DictionaryArray, Int64Array, RecordBatch, StringArray,
};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{FlightClient, FlightData, FlightDescriptor, Ticket};
use arrow_ipc::writer::IpcWriteOptions;
use arrow_ipc::{CompressionType, MessageHeader};
use futures::{TryStreamExt, stream};
use tonic::transport::{Channel, Endpoint};
// ANCHOR_END: uses

/// The most a message may take, as the server's limit.
const MESSAGE_LIMIT: usize = 64 * 1024 * 1024;

// ANCHOR: upload
/// Uploads `batches` as the dataset `name`, their buffers compressed with
/// `compression` (`None`: not compressed), dictionary columns as they are.
pub async fn upload(
    client: &mut FlightClient,
    name: &str,
    batches: Vec<RecordBatch>,
    compression: Option<CompressionType>,
) -> Result<(), Box<dyn Error>> {
    let options = IpcWriteOptions::default().try_with_compression(compression)?;
    let descriptor = FlightDescriptor::new_path(vec![name.to_string()]);
    let flight_data = FlightDataEncoderBuilder::new()
        .with_options(options)
        .with_dictionary_handling(DictionaryHandling::Resend)
        .with_flight_descriptor(Some(descriptor))
        .build(stream::iter(batches.into_iter().map(Ok)));
    client
        .do_put(flight_data)
        .await?
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}
// ANCHOR_END: upload

// ANCHOR: download
/// What a download brought: its messages, of which dictionaries, their
/// bytes (IPC header and body) and the largest message.
#[derive(Debug, Default)]
struct Received {
    messages: usize,
    dictionaries: usize,
    bytes: usize,
    largest: usize,
}

/// Downloads `ticket`, counting its messages before decoding them.
async fn download(
    client: &mut FlightClient,
    ticket: &str,
) -> Result<(Vec<RecordBatch>, Received), Box<dyn Error>> {
    let ticket = Ticket::new(ticket.to_string());
    let response = client.inner_mut().do_get(ticket).await?;
    let messages: Vec<FlightData> = response.into_inner().try_collect().await?;
    let mut received = Received::default();
    for message in &messages {
        let size = message.data_header.len() + message.data_body.len();
        received.messages += 1;
        received.bytes += size;
        received.largest = received.largest.max(size);
        let header = arrow_ipc::root_as_message(&message.data_header);
        let kind = header.map(|header| header.header_type());
        if kind == Ok(MessageHeader::DictionaryBatch) {
            received.dictionaries += 1;
        }
    }
    let messages = stream::iter(messages.into_iter().map(Ok));
    let batches = FlightRecordBatchStream::new_from_flight_data(messages);
    Ok((batches.try_collect().await?, received))
}
// ANCHOR_END: download

/// `rows` rows of animals: names that repeat, and numbers.
fn animals(rows: i64) -> Result<RecordBatch, Box<dyn Error>> {
    let names = ["cat", "dog", "horse", "goose", "llama"];
    let name =
        StringArray::from_iter_values((0..rows).map(|i| names[i as usize % 5]));
    let legs = Int64Array::from_iter_values((0..rows).map(|i| 2 + 2 * (i % 2)));
    let batch = RecordBatch::try_from_iter([
        ("name", Arc::new(name) as ArrayRef),
        ("legs", Arc::new(legs) as ArrayRef),
    ])?;
    Ok(batch)
}

/// A batch of one dictionary-encoded column, `kind`.
fn kinds(values: &[&str]) -> Result<RecordBatch, Box<dyn Error>> {
    let kind: DictionaryArray<Int32Type> = values.iter().copied().collect();
    Ok(RecordBatch::try_from_iter([(
        "kind",
        Arc::new(kind) as ArrayRef,
    )])?)
}

/// A batch of `rows` strings of `size` bytes each.
fn text(rows: usize, size: usize) -> Result<RecordBatch, Box<dyn Error>> {
    let text = StringArray::from_iter_values((0..rows).map(|_| "x".repeat(size)));
    Ok(RecordBatch::try_from_iter([(
        "text",
        Arc::new(text) as ArrayRef,
    )])?)
}

// ANCHOR: compression
pub async fn compression(client: &mut FlightClient) -> Result<(), Box<dyn Error>> {
    let batches = vec![animals(50_000)?, animals(50_000)?];
    upload(client, "animals", batches, Some(CompressionType::LZ4_FRAME)).await?;
    for ticket in ["animals none", "animals lz4", "animals zstd"] {
        let (batches, received) = download(client, ticket).await?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        println!("{ticket}: {rows} rows in {} bytes", received.bytes);
    }
    Ok(())
}
// ANCHOR_END: compression

// ANCHOR: dictionaries
pub async fn dictionaries(client: &mut FlightClient) -> Result<(), Box<dyn Error>> {
    // The second batch has a dictionary of its own, which replaces the first's.
    let batches = vec![kinds(&["cat", "dog", "cat"])?, kinds(&["fish", "bird"])?];
    upload(client, "kinds", batches, None).await?;
    for ticket in ["kinds hydrate", "kinds resend"] {
        let (batches, received) = download(client, ticket).await?;
        let column = batches[1].column(0);
        println!(
            "{ticket}: {} messages, {} of them dictionaries, {} bytes; \
             the second batch's column is {}",
            received.messages,
            received.dictionaries,
            received.bytes,
            column.data_type()
        );
    }
    Ok(())
}
// ANCHOR_END: dictionaries

// ANCHOR: split
async fn split(
    plain: &mut FlightClient,
    raised: &mut FlightClient,
) -> Result<(), Box<dyn Error>> {
    // 8 MiB in one batch: the encoder splits it into messages of rows.
    upload(raised, "many", vec![text(8192, 1024)?], None).await?;
    let (_, received) = download(plain, "many").await?;
    println!(
        "8 MiB of 1 KiB values: {} messages, the largest {} bytes",
        received.messages, received.largest
    );

    // One value of 6 MiB cannot be split.
    upload(raised, "one", vec![text(1, 6 * 1024 * 1024)?], None).await?;
    match download(plain, "one").await {
        Ok(_) => println!("one value of 6 MiB: received"),
        Err(e) => println!("one value of 6 MiB, the default limit: {e}"),
    }
    let (_, received) = download(raised, "one").await?;
    println!(
        "one value of 6 MiB, a limit of 64 MiB: {} messages, the largest {} bytes",
        received.messages, received.largest
    );
    Ok(())
}
// ANCHOR_END: split

// ANCHOR: too_large
async fn too_large(client: &mut FlightClient) -> Result<(), Box<dyn Error>> {
    let batch = text(1, 65 * 1024 * 1024)?;
    match upload(client, "too large", vec![batch], None).await {
        Ok(()) => println!("65 MiB in one value: stored"),
        Err(e) => println!("65 MiB in one value: {e}"),
    }
    Ok(())
}
// ANCHOR_END: too_large

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

// ANCHOR: main
#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let url = std::env::args().nth(1);
    let url = url.unwrap_or_else(|| "grpc://127.0.0.1:8821".to_string());
    let channel: Channel = flight_endpoint(&url)?.connect().await?;
    // tonic's limit on received messages is 4 MiB unless it is raised.
    let mut plain = FlightClient::new(channel.clone());
    let inner =
        FlightServiceClient::new(channel).max_decoding_message_size(MESSAGE_LIMIT);
    let mut raised = FlightClient::new_from_inner(inner);

    compression(&mut raised).await?;
    dictionaries(&mut raised).await?;
    split(&mut plain, &mut raised).await?;
    too_large(&mut raised).await?;
    Ok(())
}
// ANCHOR_END: main
