// ANCHOR: uses
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_flight::error::FlightError;
use arrow_flight::{Action, FlightClient, Ticket};
use futures::TryStreamExt;
use tokio::task::JoinHandle;
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

/// Runs the action `work` with `body`, the milliseconds it should take,
/// and says how it went.
pub async fn work(channel: Channel, body: &str) -> String {
    let mut client = FlightClient::new(channel);
    let action = Action::new("work", body.to_string());
    let results: Result<Vec<_>, FlightError> = match client.do_action(action).await
    {
        Ok(results) => results.try_collect().await,
        Err(error) => Err(error),
    };
    match results {
        Ok(results) => results
            .iter()
            .map(|body| String::from_utf8_lossy(body).into_owned())
            .collect(),
        Err(FlightError::Tonic(status)) => {
            format!("{:?}: {}", status.code(), status.message())
        }
        Err(error) => error.to_string(),
    }
}

fn start(channel: &Channel, body: &'static str) -> JoinHandle<String> {
    tokio::spawn(work(channel.clone(), body))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args().nth(1);
    let url = url.unwrap_or_else(|| "grpc://localhost:8821".to_string());
    let channel = flight_endpoint(&url)?.connect().await?;
    let mut client = FlightClient::new(channel.clone());

    // ANCHOR: log
    println!("{}", work(channel.clone(), "50").await);
    let ticket = Ticket::new("10000");
    let batches: Vec<RecordBatch> =
        client.do_get(ticket).await?.try_collect().await?;
    println!("{} batches", batches.len());
    println!("{}", work(channel.clone(), "soon").await);
    // ANCHOR_END: log

    // ANCHOR: limit
    let first = start(&channel, "1500");
    let second = start(&channel, "2000");
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("third: {}", work(channel.clone(), "10").await);
    println!("first: {}", first.await?);
    println!("second: {}", second.await?);
    println!("fourth: {}", work(channel.clone(), "10").await);
    // ANCHOR_END: limit
    Ok(())
}
