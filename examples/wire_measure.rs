//! Bytes on the wire and time on loopback, without compression, with
//! LZ4_FRAME and with ZSTD, for data that compresses and data that does
//! not; and the bytes of dictionary columns hydrated and resent. Run it
//! with `cargo run --release --example wire_measure`.

#[allow(dead_code)]
#[path = "wire_server.rs"]
mod wire_server;

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, DictionaryArray, Int64Array, RecordBatch, StringArray,
};
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{FlightClient, FlightData, FlightDescriptor, Ticket};
use arrow_ipc::CompressionType;
use arrow_ipc::writer::IpcWriteOptions;
use futures::{TryStreamExt, stream};
use rand::RngExt;
use tokio::net::TcpListener;
use tonic::transport::Endpoint;

const ROWS_PER_BATCH: usize = 65_536;
const BATCHES: usize = 32;
const RUNS: usize = 3;

/// 2 Mi rows of a name that repeats and a small number: 16 B a row.
fn compressible() -> Result<Vec<RecordBatch>, Box<dyn Error>> {
    let names = ["cat", "dog", "horse", "goose", "llama"];
    (0..BATCHES)
        .map(|b| {
            let rows = (0..ROWS_PER_BATCH).map(|i| b * ROWS_PER_BATCH + i);
            let name =
                StringArray::from_iter_values(rows.clone().map(|i| names[i % 5]));
            let legs =
                Int64Array::from_iter_values(rows.map(|i| 2 + 2 * (i as i64 % 2)));
            Ok(RecordBatch::try_from_iter([
                ("name", Arc::new(name) as ArrayRef),
                ("legs", Arc::new(legs) as ArrayRef),
            ])?)
        })
        .collect()
}

/// 32 MiB of random Int64, which no codec can shrink.
fn random() -> Result<Vec<RecordBatch>, Box<dyn Error>> {
    let mut rng = rand::rng();
    (0..BATCHES * 2)
        .map(|_| {
            let values = (0..ROWS_PER_BATCH).map(|_| rng.random::<i64>());
            let values = Int64Array::from_iter_values(values);
            Ok(RecordBatch::try_from_iter([(
                "value",
                Arc::new(values) as ArrayRef,
            )])?)
        })
        .collect()
}

/// 16 batches of a dictionary column with `distinct` values, the same in
/// every batch or, with `changing`, other values in each batch.
fn dictionary(
    distinct: usize,
    changing: bool,
) -> Result<Vec<RecordBatch>, Box<dyn Error>> {
    (0..16)
        .map(|b| {
            let first = if changing { b * distinct } else { 0 };
            let values: Vec<String> = (0..ROWS_PER_BATCH)
                .map(|i| format!("category number {}", first + i % distinct))
                .collect();
            let kind: DictionaryArray<Int32Type> =
                values.iter().map(String::as_str).collect();
            let kind = Arc::new(kind) as ArrayRef;
            Ok(RecordBatch::try_from_iter([("kind", kind)])?)
        })
        .collect()
}

fn size(data: &[FlightData]) -> usize {
    data.iter()
        .map(|d| d.data_header.len() + d.data_body.len())
        .sum()
}

/// Encodes `batches` as an upload of `name`.
async fn encode(
    name: &str,
    batches: &[RecordBatch],
    compression: Option<CompressionType>,
    dictionaries: DictionaryHandling,
) -> Result<Vec<FlightData>, Box<dyn Error>> {
    let options = IpcWriteOptions::default().try_with_compression(compression)?;
    let batches: Vec<RecordBatch> = batches.to_vec();
    let data = FlightDataEncoderBuilder::new()
        .with_options(options)
        .with_dictionary_handling(dictionaries)
        .with_flight_descriptor(Some(FlightDescriptor::new_path(vec![name.into()])))
        .build(stream::iter(batches.into_iter().map(Ok)))
        .try_collect()
        .await?;
    Ok(data)
}

/// The best of `RUNS` uploads (encoding included) and downloads (decoding
/// included) of `batches`, and the bytes of the upload.
async fn measure(
    client: &mut FlightClient,
    batches: &[RecordBatch],
    codec: &str,
) -> Result<(usize, Duration, Duration), Box<dyn Error>> {
    let compression = match codec {
        "lz4" => Some(CompressionType::LZ4_FRAME),
        "zstd" => Some(CompressionType::ZSTD),
        _ => None,
    };
    let (mut up, mut down, mut bytes) = (Duration::MAX, Duration::MAX, 0);
    for _ in 0..RUNS {
        let start = Instant::now();
        let data =
            encode("m", batches, compression, DictionaryHandling::Resend).await?;
        bytes = size(&data);
        client
            .do_put(stream::iter(data.into_iter().map(Ok)))
            .await?
            .try_collect::<Vec<_>>()
            .await?;
        up = up.min(start.elapsed());

        let start = Instant::now();
        let ticket = Ticket::new(format!("m {codec} resend"));
        let rows: usize = client
            .do_get(ticket)
            .await?
            .try_fold(0, |n, b| async move { Ok(n + b.num_rows()) })
            .await?;
        assert_eq!(
            rows,
            batches.iter().map(RecordBatch::num_rows).sum::<usize>()
        );
        down = down.min(start.elapsed());
    }
    Ok((bytes, up, down))
}

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

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("grpc://{}", listener.local_addr()?);
    let server = tokio::spawn(wire_server::serve(listener, std::future::pending()));
    let channel = flight_endpoint(&url)?.connect().await?;
    let inner = FlightServiceClient::new(channel)
        .max_decoding_message_size(wire_server::UPLOAD_MESSAGE_LIMIT);
    let mut client = FlightClient::new_from_inner(inner);

    println!("| data | codec | bytes on the wire | ratio | upload | download |");
    println!("|---|---|---|---|---|---|");
    for (label, batches) in [
        ("strings and repeated numbers, 32 MiB", compressible()?),
        ("random Int64, 32 MiB", random()?),
    ] {
        let mut plain = 0;
        for codec in ["none", "lz4", "zstd"] {
            let (bytes, up, down) = measure(&mut client, &batches, codec).await?;
            if codec == "none" {
                plain = bytes;
            }
            println!(
                "| {label} | {codec} | {bytes} | {:.3} | {} ms | {} ms |",
                bytes as f64 / plain as f64,
                up.as_millis(),
                down.as_millis()
            );
        }
    }

    println!();
    println!("| dictionary of 16 batches | Hydrate bytes | Resend bytes | ratio |");
    println!("|---|---|---|---|");
    for (distinct, changing) in [(5, false), (65_536, false), (65_536, true)] {
        let batches = dictionary(distinct, changing)?;
        let hydrate = DictionaryHandling::Hydrate;
        let hydrate = size(&encode("d", &batches, None, hydrate).await?);
        let resend = DictionaryHandling::Resend;
        let resend = size(&encode("d", &batches, None, resend).await?);
        let which = if changing {
            "other in each batch"
        } else {
            "the same"
        };
        println!(
            "| {distinct} values, {which} | {hydrate} | {resend} | {:.3} |",
            resend as f64 / hydrate as f64
        );
    }
    server.abort();
    Ok(())
}
