// ANCHOR: uses
use arrow_array::RecordBatch;
use arrow_cast::pretty::pretty_format_batches;
use arrow_flight::FlightInfo;
use arrow_flight::error::FlightError;
use arrow_flight::sql::CommandGetTables;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use tonic::transport::Channel;
// ANCHOR_END: uses

// ANCHOR: tables
/// Fetches the batches of every endpoint of `info`.
pub async fn fetch(
    client: &mut FlightSqlServiceClient<Channel>,
    info: FlightInfo,
) -> Result<Vec<RecordBatch>, FlightError> {
    let mut batches = Vec::new();
    for ticket in info.endpoint.into_iter().filter_map(|e| e.ticket) {
        let stream = client.do_get(ticket).await?;
        batches.extend(stream.try_collect::<Vec<_>>().await?);
    }
    Ok(batches)
}
// ANCHOR_END: tables

// ANCHOR: queries
/// Runs one SQL statement and returns its result.
pub async fn query(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> Result<Vec<RecordBatch>, FlightError> {
    let info = client.execute(sql.to_string(), None).await?;
    fetch(client, info).await
}
// ANCHOR_END: queries

// ANCHOR: refused
/// A failed call as its gRPC code and the server's message.
pub fn describe(error: &FlightError) -> String {
    match error {
        FlightError::Tonic(status) => {
            format!("{:?}: {}", status.code(), status.message())
        }
        other => other.to_string(),
    }
}
// ANCHOR_END: refused

// ANCHOR: login
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args().nth(1);
    let url = url.unwrap_or_else(|| "http://localhost:8819".to_string());
    let channel = Channel::from_shared(url)?.connect().await?;
    let mut client = FlightSqlServiceClient::new(channel.clone());

    let user = client.handshake("test", "password").await?;
    println!("logged in as {}", String::from_utf8_lossy(&user));
    // ANCHOR_END: login

    // ANCHOR: tables
    let info = client.get_tables(CommandGetTables::default()).await?;
    let tables = fetch(&mut client, info).await?;
    println!("{}", pretty_format_batches(&tables)?);
    // ANCHOR_END: tables

    // ANCHOR: queries
    for sql in [
        "SELECT * FROM animals",
        "select name, size from animals where size > 50",
        "SELECT COUNT(*) FROM animals;",
    ] {
        println!("{sql}");
        let batches = query(&mut client, sql).await?;
        println!("{}", pretty_format_batches(&batches)?);
    }
    // ANCHOR_END: queries

    // ANCHOR: refused
    for sql in [
        "SELECT * FROM plants",
        "SELECT name, weight FROM animals",
        "DELETE FROM animals",
        "SELECT name FROM animals WHERE size = 4",
        "",
    ] {
        match query(&mut client, sql).await {
            Err(error) => println!("{sql:?} => {}", describe(&error)),
            Ok(_) => return Err(format!("{sql:?} was accepted").into()),
        }
    }
    // ANCHOR_END: refused

    // ANCHOR: unauthenticated
    let mut anonymous = FlightSqlServiceClient::new(channel.clone());
    match query(&mut anonymous, "SELECT * FROM animals").await {
        Err(error) => println!("no login => {}", describe(&error)),
        Ok(_) => return Err("a call without credentials was accepted".into()),
    }
    anonymous.set_token("not-a-token".to_string());
    match query(&mut anonymous, "SELECT * FROM animals").await {
        Err(error) => println!("unknown token => {}", describe(&error)),
        Ok(_) => return Err("an unknown token was accepted".into()),
    }
    anonymous.clear_token();
    match anonymous.handshake("test", "wrong").await {
        Err(error) => println!("wrong password => {error}"),
        Ok(_) => return Err("a wrong password was accepted".into()),
    }
    // ANCHOR_END: unauthenticated

    // ANCHOR: relogin
    match client.handshake("admin", "secret").await {
        Err(error) => println!("second handshake => {error}"),
        Ok(_) => return Err("the second handshake was accepted".into()),
    }
    client.clear_token();
    let user = client.handshake("admin", "secret").await?;
    println!(
        "after clear_token: logged in as {}",
        String::from_utf8_lossy(&user)
    );
    // ANCHOR_END: relogin
    Ok(())
}
