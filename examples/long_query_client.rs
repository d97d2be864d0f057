// ANCHOR: uses
use std::time::{Duration, SystemTime};

use arrow_array::{Int64Array, RecordBatch};
use arrow_flight::error::FlightError;
use arrow_flight::{
    CancelFlightInfoRequest, FlightClient, FlightDescriptor, FlightEndpoint,
    FlightInfo, PollInfo, RenewFlightEndpointRequest, Ticket,
};
use futures::TryStreamExt;
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

// ANCHOR: read
/// The values of column `n` in the stream of `endpoint`.
pub async fn read(
    client: &mut FlightClient,
    endpoint: &FlightEndpoint,
) -> Result<Vec<i64>, FlightError> {
    let ticket = endpoint.ticket.clone();
    let ticket = ticket
        .ok_or_else(|| FlightError::protocol("the endpoint has no ticket"))?;
    let batches: Vec<RecordBatch> =
        client.do_get(ticket).await?.try_collect().await?;
    let mut values = Vec::new();
    for batch in &batches {
        let n = batch.column_by_name("n").and_then(|n| {
            n.as_any()
                .downcast_ref::<Int64Array>()
                .map(|n| n.values().to_vec())
        });
        let n = n.ok_or_else(|| FlightError::protocol("no Int64 column n"))?;
        values.extend(n);
    }
    Ok(values)
}

/// `250 rows, n from 1 to 250`
pub fn rows(values: &[i64]) -> String {
    match (values.first(), values.last()) {
        (Some(first), Some(last)) => {
            format!("{} rows, n from {first} to {last}", values.len())
        }
        _ => "no rows".to_string(),
    }
}

/// The refusal a call was meant to get, as `Code: message`.
pub fn refused<T>(result: Result<T, FlightError>) -> Result<String, FlightError> {
    match result {
        Err(FlightError::Tonic(status)) => {
            Ok(format!("{:?}: {}", status.code(), status.message()))
        }
        Err(other) => Err(other),
        Ok(_) => Err(FlightError::protocol("the server did not refuse")),
    }
}

/// The result so far of a poll.
pub fn info_of(poll: &PollInfo) -> Result<FlightInfo, FlightError> {
    let info = poll.info.clone();
    info.ok_or_else(|| FlightError::protocol("a PollInfo without a FlightInfo"))
}
// ANCHOR_END: read

// ANCHOR: expires
/// When `endpoint` expires, if it does.
pub fn expires(
    endpoint: &FlightEndpoint,
) -> Result<Option<SystemTime>, Box<dyn std::error::Error>> {
    match endpoint.expiration_time {
        Some(time) => Ok(Some(SystemTime::try_from(time)?)),
        None => Ok(None),
    }
}

/// Sleeps until a little after `time`.
pub async fn sleep_past(time: SystemTime) {
    let left = time.duration_since(SystemTime::now()).unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(100)).await;
}
// ANCHOR_END: expires

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // ANCHOR: connect
    let url = std::env::args().nth(1);
    let url = url.unwrap_or_else(|| "grpc://localhost:8826".to_string());
    let channel = flight_endpoint(&url)?.connect().await?;
    let mut client = FlightClient::new(channel);
    // ANCHOR_END: connect

    // ANCHOR: poll
    let mut next = Some(FlightDescriptor::new_cmd("count to 1000"));
    let (mut polls, mut sum) = (0, 0);
    let mut info = FlightInfo::new();
    while let Some(descriptor) = next {
        let poll = client.poll_flight_info(descriptor).await?;
        polls += 1;
        let read_before = info.endpoint.len();
        info = info_of(&poll)?;
        let progress = poll.progress.unwrap_or(0.0) * 100.0;
        let ready = info.endpoint.len();
        println!("poll {polls}: {progress:.0}% done, {ready} part(s) ready");
        for (i, endpoint) in info.endpoint.iter().enumerate().skip(read_before) {
            let values = read(&mut client, endpoint).await?;
            println!("  read part {}: {}", i + 1, rows(&values));
            sum += values.iter().sum::<i64>();
        }
        next = poll.flight_descriptor;
    }
    println!("complete after {polls} polls; the sum of n is {sum}");
    // ANCHOR_END: poll

    // ANCHOR: renew
    let first = info.endpoint.first().ok_or("no endpoints")?.clone();
    let until = expires(&first)?.ok_or("part 1 does not expire")?;
    println!(
        "read part 1 again: {}",
        rows(&read(&mut client, &first).await?)
    );
    let renewal = RenewFlightEndpointRequest::new(first.clone());
    let renewed = client.renew_flight_endpoint(renewal).await?;
    let renewed_until = expires(&renewed)?.ok_or("the renewal does not expire")?;
    let left = renewed_until.duration_since(SystemTime::now())?;
    let later = renewed_until > until;
    println!("renewed part 1: valid {:.0} s from now", left.as_secs_f64());
    println!("renewed part 1: later than before: {later}");
    sleep_past(until).await;
    let values = read(&mut client, &renewed).await?;
    println!("after its first expiration_time: {}", rows(&values));
    sleep_past(renewed_until).await;
    let refusal = refused(read(&mut client, &renewed).await)?;
    println!("after the renewed one: {refusal}");
    let renewal = RenewFlightEndpointRequest::new(renewed);
    let refusal = refused(client.renew_flight_endpoint(renewal).await)?;
    println!("renew again: {refusal}");
    // ANCHOR_END: renew

    // ANCHOR: cancel
    let cancel = CancelFlightInfoRequest::new(info);
    let result = client.cancel_flight_info(cancel).await?;
    println!("cancel query 1: {}", result.status().as_str_name());
    let query = FlightDescriptor::new_cmd("count to 1000");
    let mut poll = client.poll_flight_info(query).await?;
    while info_of(&poll)?.endpoint.is_empty() {
        let descriptor = poll.flight_descriptor.ok_or("ended with no parts")?;
        poll = client.poll_flight_info(descriptor).await?;
    }
    let info = info_of(&poll)?;
    let next = poll.flight_descriptor.ok_or("the query is complete")?;
    println!("{} part(s) ready: cancel", info.endpoint.len());
    let cancel = CancelFlightInfoRequest::new(info.clone());
    let result = client.cancel_flight_info(cancel).await?;
    println!("cancel: {}", result.status().as_str_name());
    let refusal = refused(read(&mut client, &info.endpoint[0]).await)?;
    println!("read part 1: {refusal}");
    for when in ["poll", "poll 1 s later"] {
        let polled = refused(client.poll_flight_info(next.clone()).await)?;
        println!("{when}: {polled}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // ANCHOR_END: cancel

    // ANCHOR: abandon
    let query = FlightDescriptor::new_cmd("count to 100000");
    let poll = client.poll_flight_info(query).await?;
    let next = poll.flight_descriptor.ok_or("the query is complete")?;
    let until = poll.expiration_time.ok_or("the poll does not expire")?;
    sleep_past(SystemTime::try_from(until)?).await;
    let polled = refused(client.poll_flight_info(next).await)?;
    println!("poll too late: {polled}");
    // ANCHOR_END: abandon

    // ANCHOR: read_once
    let query = FlightDescriptor::new_cmd("count to 500");
    let info = client.get_flight_info(query).await?;
    let first = info.endpoint.first().ok_or("no endpoints")?;
    let until = expires(first)?;
    println!("{} part(s), expiration_time {until:?}", info.endpoint.len());
    println!("read part 1: {}", rows(&read(&mut client, first).await?));
    let refusal = refused(read(&mut client, first).await)?;
    println!("read part 1 again: {refusal}");
    // ANCHOR_END: read_once

    // ANCHOR: mistakes
    for command in ["count to lots", "query 99"] {
        let descriptor = FlightDescriptor::new_cmd(command);
        let refusal = refused(client.poll_flight_info(descriptor).await)?;
        println!("poll {command:?}: {refusal}");
    }
    let refusal = refused(client.do_get(Ticket::new("nonsense")).await)?;
    println!("do_get \"nonsense\": {refusal}");
    let unknown =
        FlightInfo::new().with_descriptor(FlightDescriptor::new_cmd("query 99"));
    let cancel = CancelFlightInfoRequest::new(unknown);
    let refusal = refused(client.cancel_flight_info(cancel).await)?;
    println!("cancel query 99: {refusal}");
    let unknown = FlightEndpoint::new().with_ticket(Ticket::new("99/1"));
    let renewal = RenewFlightEndpointRequest::new(unknown);
    let refusal = refused(client.renew_flight_endpoint(renewal).await)?;
    println!("renew 99/1: {refusal}");
    // ANCHOR_END: mistakes
    Ok(())
}
