// ANCHOR: uses
use arrow_array::{Int64Array, RecordBatch};
use arrow_flight::{FlightClient, FlightDescriptor, FlightEndpoint};
use arrow_select::concat::concat_batches;
use futures::TryStreamExt;
use tokio::task::JoinSet;
use tonic::transport::Channel;
// ANCHOR_END: uses

// ANCHOR: fetch
/// The batches of one endpoint, from the server its first location names,
/// or from `origin`, the server that gave out the endpoint, if it names none.
pub async fn fetch(
    endpoint: FlightEndpoint,
    origin: String,
) -> Result<Vec<RecordBatch>, Box<dyn std::error::Error + Send + Sync>> {
    let url = match endpoint.location.first() {
        Some(location) => location.uri.replacen("grpc://", "http://", 1),
        None => origin,
    };
    let ticket = endpoint.ticket.ok_or("an endpoint without a ticket")?;
    let channel = Channel::from_shared(url.clone())?
        .connect()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let mut client = FlightClient::new(channel);
    let batches = client.do_get(ticket).await?.try_collect().await?;
    Ok(batches)
}

/// Fetches all `endpoints` at once, and returns their batches in
/// the endpoints' order.
pub async fn fetch_all(
    endpoints: Vec<FlightEndpoint>,
    origin: &str,
) -> Result<Vec<RecordBatch>, Box<dyn std::error::Error + Send + Sync>> {
    let mut fetches = JoinSet::new();
    for (index, endpoint) in endpoints.into_iter().enumerate() {
        let origin = origin.to_string();
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
    let url = url.unwrap_or_else(|| "http://localhost:8822".to_string());
    let channel = Channel::from_shared(url.clone())?.connect().await?;
    let mut client = FlightClient::new(channel);
    let descriptor = FlightDescriptor::new_path(vec!["numbers".to_string()]);
    let info = client.get_flight_info(descriptor).await?;
    println!(
        "{} rows in {} endpoints",
        info.total_records,
        info.endpoint.len()
    );

    let schema = std::sync::Arc::new(info.clone().try_decode_schema()?);
    let batches = fetch_all(info.endpoint, &url).await?;
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
