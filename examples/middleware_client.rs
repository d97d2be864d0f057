// ANCHOR: uses
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_flight::error::FlightError;
use arrow_flight::{Action, FlightClient, Ticket};
use futures::TryStreamExt;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
// ANCHOR_END: uses

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
    let url = url.unwrap_or_else(|| "http://localhost:8821".to_string());
    let channel = Channel::from_shared(url)?.connect().await?;
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
