// ANCHOR: all
use arrow_flight::{Action, FlightClient};
use futures::TryStreamExt;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// Asks the server how `service` is doing ("" for the server as a whole).
pub async fn check(
    client: &mut HealthClient<Channel>,
    service: &str,
) -> Result<String, tonic::Status> {
    let request = HealthCheckRequest {
        service: service.to_string(),
    };
    let response = client.check(request).await?.into_inner();
    Ok(format!("{:?}", response.status()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args().nth(1);
    let url = url.unwrap_or_else(|| "grpc://localhost:8818".to_string());
    let channel = flight_endpoint(&url)?.connect().await?;

    let mut health = HealthClient::new(channel.clone());
    let services = [
        "",
        "arrow.flight.protocol.FlightService",
        "arrow.flight.protocol.sql.FlightSqlService",
    ];
    for service in services {
        match check(&mut health, service).await {
            Ok(status) => println!("{service:?}: {status}"),
            Err(status) if status.code() == Code::NotFound => {
                println!("{service:?}: {:?}, {}", status.code(), status.message());
            }
            Err(status) => return Err(status.into()),
        }
    }

    let mut flight = FlightClient::new(channel);
    let action = Action::new("echo", "one connection, two services");
    let results: Vec<_> = flight.do_action(action).await?.try_collect().await?;
    for body in results {
        println!("{}", String::from_utf8_lossy(&body));
    }
    Ok(())
}
// ANCHOR_END: all

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
