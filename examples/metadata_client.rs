// ANCHOR: uses
use std::time::Duration;

use arrow_array::{Int64Array, RecordBatch};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::{
    FlightClient, FlightDescriptor, FlightEndpoint, FlightInfo, Ticket,
};
use futures::{TryStreamExt, stream};
use tokio::task::JoinSet;
use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};
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

pub type Error = Box<dyn std::error::Error + Send + Sync>;

// ANCHOR: describe
/// Asks for the dataset `name` and prints its order and app_metadata, and
/// each endpoint's ticket and app_metadata.
pub async fn describe(
    client: &mut FlightClient,
    name: &str,
) -> Result<FlightInfo, Error> {
    let descriptor = FlightDescriptor::new_path(vec![name.to_string()]);
    let info = client.get_flight_info(descriptor).await?;
    let metadata = String::from_utf8_lossy(&info.app_metadata);
    println!(
        "{name}: ordered {}, app_metadata {metadata:?}",
        info.ordered
    );
    for endpoint in &info.endpoint {
        let ticket = endpoint
            .ticket
            .as_ref()
            .ok_or("an endpoint without a ticket")?;
        let ticket = String::from_utf8_lossy(&ticket.ticket);
        let metadata = String::from_utf8_lossy(&endpoint.app_metadata);
        println!("  endpoint {ticket:?}: app_metadata {metadata:?}");
    }
    Ok(info)
}
// ANCHOR_END: describe

// ANCHOR: fetch
/// The batches of one endpoint. These endpoints name no location: their
/// tickets are redeemed on the server that gave them out, `channel`'s.
pub async fn fetch(
    channel: Channel,
    endpoint: FlightEndpoint,
) -> Result<Vec<RecordBatch>, Error> {
    let ticket = endpoint.ticket.ok_or("an endpoint without a ticket")?;
    let batches = FlightClient::new(channel).do_get(ticket).await?;
    Ok(batches.try_collect().await?)
}

/// The endpoints one after the other, in the order given.
pub async fn one_by_one(
    channel: &Channel,
    endpoints: &[FlightEndpoint],
) -> Result<Vec<RecordBatch>, Error> {
    let mut batches = Vec::new();
    for endpoint in endpoints {
        batches.extend(fetch(channel.clone(), endpoint.clone()).await?);
    }
    Ok(batches)
}

/// All endpoints at once; each part goes to its endpoint's place, whichever
/// finishes first.
pub async fn all_at_once(
    channel: &Channel,
    endpoints: &[FlightEndpoint],
) -> Result<Vec<RecordBatch>, Error> {
    let mut downloads = JoinSet::new();
    for (place, endpoint) in endpoints.iter().cloned().enumerate() {
        let channel = channel.clone();
        downloads.spawn(async move { (place, fetch(channel, endpoint).await) });
    }
    let mut parts = vec![Vec::new(); endpoints.len()];
    while let Some(finished) = downloads.join_next().await {
        let (place, batches) = finished?;
        parts[place] = batches?;
    }
    Ok(parts.concat())
}
// ANCHOR_END: fetch

/// The `id` column of all `batches`, one after the other.
pub fn ids(batches: &[RecordBatch]) -> Result<Vec<i64>, Error> {
    let mut ids = Vec::new();
    for batch in batches {
        let column = batch.column_by_name("id").ok_or("no column id")?;
        let column = column.as_any().downcast_ref::<Int64Array>();
        ids.extend(column.ok_or("id is not Int64")?.values().iter());
    }
    Ok(ids)
}

/// A header's value as text, or `missing`.
fn value<'a>(metadata: &'a MetadataMap, name: &str) -> &'a str {
    let value = metadata.get(name).and_then(|value| value.to_str().ok());
    value.unwrap_or("missing")
}

/// A failed call's code and message.
fn status(error: FlightError) -> Result<Status, Error> {
    match error {
        FlightError::Tonic(status) => Ok(*status),
        other => Err(other.into()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let url = std::env::args().nth(1);
    let url = url.unwrap_or_else(|| "grpc://localhost:8824".to_string());
    let channel = flight_endpoint(&url)?.connect().await?;
    let mut client = FlightClient::new(channel.clone());

    // ANCHOR: ordered
    let info = describe(&mut client, "numbers").await?;
    let expected = ids(&one_by_one(&channel, &info.endpoint).await?)?;
    let parallel = ids(&all_at_once(&channel, &info.endpoint).await?)?;
    println!(
        "all at once, put back in endpoint order: {} rows, the same table: {}",
        parallel.len(),
        parallel == expected
    );
    let mut reversed = info.endpoint.clone();
    reversed.reverse();
    let backwards = ids(&one_by_one(&channel, &reversed).await?)?;
    let mut sorted = backwards.clone();
    sorted.sort_unstable();
    println!(
        "back to front: the same rows: {}, the same table: {}",
        sorted == expected,
        backwards == expected
    );
    // ANCHOR_END: ordered

    // ANCHOR: unordered
    let info = describe(&mut client, "sample").await?;
    let mut downloads = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.ok_or("an endpoint without a ticket")?;
        downloads.push(FlightClient::new(channel.clone()).do_get(ticket).await?);
    }
    let batches: Vec<RecordBatch> =
        stream::select_all(downloads).try_collect().await?;
    let mut rows = ids(&batches)?;
    rows.sort_unstable();
    println!(
        "batches as they came: {} rows, the same rows as numbers: {}",
        rows.len(),
        rows == expected
    );
    // ANCHOR_END: unordered

    // ANCHOR: trailers
    let mut part = client.do_get(Ticket::new("numbers/0")).await?;
    let planned = value(part.headers(), "x-rows-planned");
    println!("headers: x-rows-planned {planned}");
    let mut rows = 0;
    while let Some(batch) = part.try_next().await? {
        rows += batch.num_rows();
    }
    let trailers = part.trailers().ok_or("the stream ended without trailers")?;
    println!(
        "read {rows} rows; trailers: x-rows-sent {}, x-server-micros {}",
        value(&trailers, "x-rows-sent"),
        value(&trailers, "x-server-micros")
    );
    // ANCHOR_END: trailers

    // ANCHOR: drop
    let mut download = client.do_get(Ticket::new("slow")).await?;
    let mut read = 0;
    while read < 10 {
        download.try_next().await?.ok_or("slow ended early")?;
        read += 1;
    }
    drop(download);
    println!("read {read} batches of slow, then dropped the stream");
    // ANCHOR_END: drop

    // ANCHOR: deadline
    let mut request = Request::new(Ticket::new("slow"));
    request.set_timeout(Duration::from_millis(500));
    let response = client.inner_mut().do_get(request).await?;
    let data = response.into_inner().map_err(FlightError::from);
    let mut download = FlightRecordBatchStream::new_from_flight_data(data);
    let mut read = 0;
    let error = loop {
        match download.try_next().await {
            Ok(Some(_)) => read += 1,
            Ok(None) => return Err("slow ended before its deadline".into()),
            Err(error) => break status(error)?,
        }
    };
    println!(
        "read {read} batches, then {:?}: {}",
        error.code(),
        error.message()
    );
    // ANCHOR_END: deadline

    // ANCHOR: bad
    for ticket in ["numbers/3", "numbers/three", "\u{0}\u{1}"] {
        let result = client.do_get(Ticket::new(ticket)).await;
        let error = status(result.err().ok_or("a bad ticket was taken")?)?;
        println!("{ticket:?}: {:?}: {}", error.code(), error.message());
    }
    let command = FlightDescriptor::new_cmd("SELECT * FROM numbers");
    let result = client.get_flight_info(command).await;
    let error = status(result.err().ok_or("a command was taken")?)?;
    println!("a command: {:?}: {}", error.code(), error.message());
    // ANCHOR_END: bad
    Ok(())
}
