// ANCHOR: uses
use arrow_array::{Int64Array, RecordBatch};
use arrow_flight::{FlightClient, FlightDescriptor, FlightEndpoint};
use arrow_select::concat::concat_batches;
use futures::TryStreamExt;
use tokio::task::JoinSet;
use tonic::transport::{Channel, Endpoint};
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

// ANCHOR: fetch
/// The location that means "the connection this endpoint came from".
pub const REUSE_CONNECTION: &str = "arrow-flight-reuse-connection:";

/// The batches of one endpoint, from the server its first location names,
/// or over `origin`, the connection that gave out the endpoint, if it names
/// none or `arrow-flight-reuse-connection://?`.
pub async fn fetch(
    endpoint: FlightEndpoint,
    origin: Channel,
) -> Result<Vec<RecordBatch>, Box<dyn std::error::Error + Send + Sync>> {
    let ticket = endpoint.ticket.ok_or("an endpoint without a ticket")?;
    let channel = match endpoint.location.first() {
        Some(location) if !location.uri.starts_with(REUSE_CONNECTION) => {
            let url = &location.uri;
            let endpoint = flight_endpoint(url)?;
            endpoint
                .connect()
                .await
                .map_err(|e| format!("{url}: {e}"))?
        }
        _ => origin,
    };
    let mut client = FlightClient::new(channel);
    let batches = client.do_get(ticket).await?.try_collect().await?;
    Ok(batches)
}

/// Fetches all `endpoints` at once, and returns their batches in
/// the endpoints' order.
pub async fn fetch_all(
    endpoints: Vec<FlightEndpoint>,
    origin: &Channel,
) -> Result<Vec<RecordBatch>, Box<dyn std::error::Error + Send + Sync>> {
    let mut fetches = JoinSet::new();
    for (index, endpoint) in endpoints.into_iter().enumerate() {
        let origin = origin.clone();
        fetches.spawn(async move { (index, fetch(endpoint, origin).await) });
    }
    let mut parts = Vec::new();
    while let Some(done) = fetches.join_next().await {
        let (index, batches) = done?;
        parts.push((index, batches?));
    }
    parts.sort_by_key(|(index, _)| *index);
    Ok(parts.into_iter().flat_map(|(_, batches)| batches).collect())
}
// ANCHOR_END: fetch

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // ANCHOR: main
    let url = std::env::args().nth(1);
    let url = url.unwrap_or_else(|| "grpc://localhost:8822".to_string());
    let channel = flight_endpoint(&url)?.connect().await?;
    let mut client = FlightClient::new(channel.clone());
    let descriptor = FlightDescriptor::new_path(vec!["numbers".to_string()]);
    let info = client.get_flight_info(descriptor).await?;
    println!(
        "{} rows in {} endpoints",
        info.total_records,
        info.endpoint.len()
    );

    let schema = std::sync::Arc::new(info.clone().try_decode_schema()?);
    let batches = fetch_all(info.endpoint, &channel).await?;
    let table = concat_batches(&schema, &batches)?;
    let ids = table
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or("id is not an Int64 column")?;
    let in_order = ids.values().iter().zip(0..).all(|(id, n)| *id == n);
    println!(
        "{} rows put together, ids in order: {in_order}",
        table.num_rows()
    );
    // ANCHOR_END: main
    Ok(())
}
