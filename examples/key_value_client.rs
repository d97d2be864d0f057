// ANCHOR: uses
use std::sync::Arc;

use arrow_array::{RecordBatch, StringArray};
use arrow_cast::pretty::pretty_format_batches;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::{Action, FlightClient, FlightDescriptor, FlightInfo};
use arrow_schema::{DataType, Field, Schema};
use futures::{TryStreamExt, stream};
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

// ANCHOR: describe
/// One line about a dataset: its key, schema, rows and where to get it.
pub fn describe(info: &FlightInfo) -> Result<String, Box<dyn std::error::Error>> {
    let key = info.flight_descriptor.as_ref().map(|d| d.path.join("/"));
    let schema = info.clone().try_decode_schema()?;
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| format!("{}: {}", f.name(), f.data_type()))
        .collect();
    let where_to_get = match info.endpoint.first() {
        Some(endpoint) if endpoint.location.is_empty() => "this server",
        Some(_) => "elsewhere",
        None => "nowhere",
    };
    Ok(format!(
        "{}: [{}], {} rows, {} endpoint(s), at {where_to_get}",
        key.unwrap_or_default(),
        fields.join(", "),
        info.total_records,
        info.endpoint.len()
    ))
}
// ANCHOR_END: describe

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // ANCHOR: connect
    let url = std::env::args().nth(1);
    let url = url.unwrap_or_else(|| "grpc://localhost:33333".to_string());
    let channel = flight_endpoint(&url)?.connect().await?;
    let mut client = FlightClient::new(channel);
    println!("C1: connected to {url}");
    // ANCHOR_END: connect

    // ANCHOR: put
    let schema =
        Arc::new(Schema::new(vec![Field::new("name", DataType::Utf8, true)]));
    let mut batches = Vec::new();
    for names in [["Ronald", "David", "Francisco"], ["Manuel", "Felipe", "JJ"]] {
        let column = Arc::new(StringArray::from(names.to_vec()));
        batches.push(RecordBatch::try_new(schema.clone(), vec![column])?);
    }
    let profiles = FlightDescriptor::new_path(vec!["profiles".to_string()]);
    let upload = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(profiles.clone()))
        .build(stream::iter(batches.into_iter().map(Ok)));
    let acks: Vec<_> = client.do_put(upload).await?.try_collect().await?;
    println!(
        "C2: wrote 2 batches of 3 rows each ({} acknowledgements)",
        acks.len()
    );
    // ANCHOR_END: put

    // ANCHOR: get_flight_info
    let info = client.get_flight_info(profiles).await?;
    println!("C3: {}", describe(&info)?);
    // ANCHOR_END: get_flight_info

    // ANCHOR: do_get
    let ticket = info.endpoint[0]
        .ticket
        .clone()
        .ok_or("the endpoint has no ticket")?;
    let batches: Vec<RecordBatch> =
        client.do_get(ticket).await?.try_collect().await?;
    println!("C4: got {} batches", batches.len());
    for batch in &batches {
        println!("{}", pretty_format_batches(std::slice::from_ref(batch))?);
    }
    // ANCHOR_END: do_get

    // ANCHOR: list_flights
    let infos: Vec<FlightInfo> =
        client.list_flights("").await?.try_collect().await?;
    for info in &infos {
        println!("C5: {}", describe(info)?);
    }
    // ANCHOR_END: list_flights

    // ANCHOR: delete
    let results: Vec<_> = client
        .do_action(Action::new("DELETE", "profiles"))
        .await?
        .try_collect()
        .await?;
    for result in results {
        println!("C6: {}", String::from_utf8_lossy(&result));
    }
    // ANCHOR_END: delete

    // ANCHOR: after_delete
    let infos: Vec<FlightInfo> =
        client.list_flights("").await?.try_collect().await?;
    println!("C7: {} datasets after the delete", infos.len());
    // ANCHOR_END: after_delete
    Ok(())
}
