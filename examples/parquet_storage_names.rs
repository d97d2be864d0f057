// ANCHOR: try_name
use arrow_flight::error::FlightError;
use arrow_flight::{Action, FlightClient, FlightDescriptor, Ticket};
use futures::TryStreamExt;

use tonic::transport::Endpoint;
// ANCHOR_END: try_name

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

// ANCHOR: try_name
/// Makes the call `call` (an action, if it is not a Flight call) with the
/// dataset name `name`, and prints how the server answers.
async fn try_name(
    client: &mut FlightClient,
    call: &str,
    name: &str,
) -> Result<(), FlightError> {
    let answer = match call {
        "get_flight_info" => {
            let descriptor = FlightDescriptor::new_path(vec![name.to_string()]);
            client.get_flight_info(descriptor).await.map(drop)
        }
        "do_get" => client.do_get(Ticket::new(name.to_string())).await.map(drop),
        _ => match client.do_action(Action::new(call, name.to_string())).await {
            Ok(results) => results.try_collect().await.map(|_: Vec<_>| ()),
            Err(e) => Err(e),
        },
    };
    match answer {
        Err(FlightError::Tonic(status)) => {
            println!("{call} {name:?}: {:?}: {}", status.code(), status.message());
        }
        Err(other) => return Err(other),
        Ok(()) => println!("{call} {name:?}: accepted"),
    }
    Ok(())
}
// ANCHOR_END: try_name

// ANCHOR: main
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args().nth(1);
    let url = url.unwrap_or_else(|| "grpc://localhost:8815".to_string());
    let channel = flight_endpoint(&url)?.connect().await?;
    let mut client = FlightClient::new(channel);

    let calls = [
        ("get_flight_info", "../secrets.parquet"),
        ("get_flight_info", "/etc/passwd"),
        ("do_get", "..\\secrets.parquet"),
        ("do_get", ""),
        ("drop_dataset", ".upload-1234"),
        ("drop_dataset", "missing.parquet"),
        ("delete_everything", "uploaded.parquet"),
    ];
    for (call, name) in calls {
        try_name(&mut client, call, name).await?;
    }
    Ok(())
}
// ANCHOR_END: main
