// ANCHOR: uses
use std::error::Error;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::{FlightClient, FlightData, FlightDescriptor, Ticket};
use futures::channel::mpsc;
use futures::stream;
use futures::{SinkExt, Stream, StreamExt, TryStreamExt};
use tonic::transport::Endpoint;
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

/// A batch of one column, `value`.
pub fn values(values: &[i64]) -> Result<RecordBatch, Box<dyn Error>> {
    let column = Arc::new(Int64Array::from(values.to_vec())) as ArrayRef;
    Ok(RecordBatch::try_from_iter([("value", column)])?)
}

/// The values of an Int64 column.
pub fn column(batch: &RecordBatch, name: &str) -> Result<Vec<i64>, Box<dyn Error>> {
    let column = batch.column_by_name(name).ok_or("no such column")?;
    let column = column.as_any().downcast_ref::<Int64Array>();
    Ok(column.ok_or("not Int64")?.values().to_vec())
}

// ANCHOR: exchange
/// Sends each batch only once the result of the one before has come back,
/// to show that the server answers as batches arrive. The call is made once
/// the first batch is on its way: some servers answer it only with their
/// first result.
pub async fn running_totals(
    client: &mut FlightClient,
) -> Result<(), Box<dyn Error>> {
    let (mut sender, receiver) = mpsc::channel(1);
    let descriptor = FlightDescriptor::new_cmd("running total");
    let encoder =
        FlightDataEncoderBuilder::new().with_flight_descriptor(Some(descriptor));
    let mut input = Some(encoder.build(receiver.map(Ok)));
    let mut output = None;

    let batches = [values(&[1, 2, 3])?, values(&[10, 20])?, values(&[100])?];
    for (i, batch) in batches.into_iter().enumerate() {
        println!("sent batch {}: value {:?}", i + 1, column(&batch, "value")?);
        sender.send(batch).await?;
        if let Some(input) = input.take() {
            output = Some(client.do_exchange(input).await?);
        }
        let results = output.as_mut().ok_or("no exchange")?;
        let result = results
            .try_next()
            .await?
            .ok_or("the exchange ended early")?;
        let totals = column(&result, "running_total")?;
        println!("got batch {}: running_total {totals:?}", i + 1);
    }
    sender.close_channel();
    let mut output = output.ok_or("no exchange")?;
    if output.try_next().await?.is_some() {
        return Err("more results than batches".into());
    }
    Ok(())
}
// ANCHOR_END: exchange

// ANCHOR: metadata
// ANCHOR: copy_encode_with_metadata
/// Encodes `batches` as Flight data, each batch with its own app_metadata.
/// Every batch gets an encoder of its own, whose first message, the schema,
/// is sent only once; the batch's messages (more than one if the encoder
/// splits it) all carry its metadata.
pub fn encode_with_metadata(
    descriptor: Option<FlightDescriptor>,
    batches: impl Stream<Item = (RecordBatch, Vec<u8>)>,
) -> impl Stream<Item = Result<FlightData, FlightError>> {
    let mut descriptor = descriptor;
    batches.enumerate().flat_map(move |(i, (batch, metadata))| {
        FlightDataEncoderBuilder::new()
            .with_flight_descriptor(descriptor.take())
            .build(stream::iter([Ok(batch)]))
            .enumerate()
            .skip(usize::from(i > 0))
            .map(move |(j, data)| match j {
                0 => data,
                _ => Ok(data?.with_app_metadata(metadata.clone())),
            })
    })
}
// ANCHOR_END: copy_encode_with_metadata
// ANCHOR_END: metadata

// ANCHOR: put
/// Uploads three batches, each labelled, and prints the server's
/// acknowledgement of each before sending the next.
pub async fn upload_with_acks(
    client: &mut FlightClient,
) -> Result<(), Box<dyn Error>> {
    let (mut sender, receiver) = mpsc::channel(1);
    let descriptor = FlightDescriptor::new_path(vec!["numbers".to_string()]);
    let mut input = Some(encode_with_metadata(Some(descriptor), receiver));
    let mut acks = None;

    let batches = [values(&[1, 2, 3])?, values(&[4, 5])?, values(&[6])?];
    for (i, batch) in batches.into_iter().enumerate() {
        let label = format!("part {}", i + 1);
        println!("sent {label}");
        sender.send((batch, label.into_bytes())).await?;
        if let Some(input) = input.take() {
            acks = Some(client.do_put(input).await?);
        }
        let acks = acks.as_mut().ok_or("no upload")?;
        let ack = acks.try_next().await?.ok_or("no acknowledgement")?;
        println!("{}", String::from_utf8_lossy(&ack.app_metadata));
    }
    sender.close_channel();
    let mut acks = acks.ok_or("no upload")?;
    while let Some(ack) = acks.try_next().await? {
        println!("unexpected: {:?}", ack.app_metadata);
    }
    Ok(())
}
// ANCHOR_END: put

// ANCHOR: get
/// Downloads a dataset and prints each batch's app_metadata with its rows.
pub async fn download_with_progress(
    client: &mut FlightClient,
) -> Result<(), Box<dyn Error>> {
    let stream = client.do_get(Ticket::new("numbers")).await?;
    let mut data: FlightDataDecoder = stream.into_inner();
    while let Some(message) = data.try_next().await? {
        if let DecodedPayload::RecordBatch(batch) = &message.payload {
            let progress = String::from_utf8_lossy(&message.inner.app_metadata);
            println!("{progress}: value {:?}", column(batch, "value")?);
        }
    }
    Ok(())
}
// ANCHOR_END: get

// ANCHOR: wrong_schema
/// Sends a batch without a `value` column; the server names what is missing.
pub async fn wrong_schema(client: &mut FlightClient) -> Result<(), Box<dyn Error>> {
    let names = Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef;
    let batch = RecordBatch::try_from_iter([("name", names)])?;
    let descriptor = FlightDescriptor::new_cmd("running total");
    let input = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(descriptor))
        .build(stream::iter([Ok(batch)]));
    // The refusal may end the call at once or come after it started.
    let result = match client.do_exchange(input).await {
        Ok(results) => results.try_collect::<Vec<_>>().await,
        Err(error) => Err(error),
    };
    match result {
        Err(FlightError::Tonic(status)) => {
            println!("{:?}: {}", status.code(), status.message());
            Ok(())
        }
        other => Err(format!("expected an error, got {other:?}").into()),
    }
}
// ANCHOR_END: wrong_schema

// ANCHOR: main
#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let url = std::env::args().nth(1);
    let url = url.unwrap_or_else(|| "grpc://localhost:8820".to_string());
    let channel = flight_endpoint(&url)?.connect().await?;
    let mut client = FlightClient::new(channel);

    running_totals(&mut client).await?;
    upload_with_acks(&mut client).await?;
    download_with_progress(&mut client).await?;
    wrong_schema(&mut client).await?;
    Ok(())
}
// ANCHOR_END: main
