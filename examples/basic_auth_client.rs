// ANCHOR: login
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{Action, FlightClient, HandshakeRequest};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::{TryStreamExt, stream};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

/// The header that carries a bearer token, as a name and a value.
pub type TokenPair = (&'static str, MetadataValue<Ascii>);

/// Logs in with a user name and password and returns the bearer token the
/// server sent back in the `authorization` header of its Handshake response.
pub async fn authenticate_basic_token(
    client: &mut FlightServiceClient<Channel>,
    username: &str,
    password: &str,
) -> Result<TokenPair, Status> {
    let credentials = STANDARD.encode(format!("{username}:{password}"));
    let basic =
        MetadataValue::try_from(format!("Basic {credentials}")).map_err(|_| {
            Status::invalid_argument("credentials are not a valid header value")
        })?;
    let mut request = Request::new(stream::iter([HandshakeRequest::default()]));
    request.metadata_mut().insert("authorization", basic);

    let response = client.handshake(request).await?;
    match response.metadata().get("authorization") {
        Some(bearer) => Ok(("authorization", bearer.clone())),
        None => Err(Status::unauthenticated("the server sent no bearer token")),
    }
}
// ANCHOR_END: login

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

// ANCHOR: echo
/// Sends an `echo` action with the token and prints every result body.
pub async fn echo(
    client: &mut FlightServiceClient<Channel>,
    token_pair: &TokenPair,
) -> Result<(), Status> {
    let mut request = Request::new(Action::new("echo", "Hello, world!"));
    let (name, value) = token_pair;
    request.metadata_mut().insert(*name, value.clone());

    let mut results = client.do_action(request).await?.into_inner();
    while let Some(result) = results.message().await? {
        println!("{:?}", result.body);
    }
    Ok(())
}
// ANCHOR_END: echo

// ANCHOR: whoami
/// Asks the server whom the token belongs to. arrow-flight's `FlightClient`
/// sends the headers given to `add_header` with every call it makes.
pub async fn whoami(
    channel: Channel,
    token_pair: &TokenPair,
) -> Result<String, Box<dyn std::error::Error>> {
    let mut client = FlightClient::new(channel);
    let (name, value) = token_pair;
    client.add_header(name, value.to_str()?)?;
    let action = Action::new("whoami", "");
    let names: Vec<_> = client.do_action(action).await?.try_collect().await?;
    Ok(names
        .iter()
        .map(|name| String::from_utf8_lossy(name))
        .collect())
}
// ANCHOR_END: whoami

// ANCHOR: login
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args().nth(1);
    let url = url.unwrap_or_else(|| "grpc://localhost:8816".to_string());
    let channel = flight_endpoint(&url)?.connect().await?;
    let mut client = FlightServiceClient::new(channel.clone());

    let token_pair =
        authenticate_basic_token(&mut client, "test", "password").await?;
    println!("{token_pair:?}");
    // ANCHOR_END: login

    // ANCHOR: echo
    echo(&mut client, &token_pair).await?;
    // ANCHOR_END: echo

    // ANCHOR: whoami
    println!("logged in as {}", whoami(channel, &token_pair).await?);
    // ANCHOR_END: whoami

    // ANCHOR: no_credentials
    let action = Action::new("echo", "Hello, world!");
    match client.do_action(Request::new(action)).await {
        Err(status) if status.code() == Code::Unauthenticated => {
            println!("Unauthenticated: {}", status.message());
        }
        Err(status) => return Err(status.into()),
        Ok(_) => return Err("expected the call to fail".into()),
    }
    // ANCHOR_END: no_credentials

    // ANCHOR: wrong_password
    match authenticate_basic_token(&mut client, "invalid", "password").await {
        Err(status) if status.code() == Code::Unauthenticated => {
            println!("Unauthenticated: {}", status.message());
        }
        Err(status) => return Err(status.into()),
        Ok(_) => return Err("expected the login to fail".into()),
    }
    // ANCHOR_END: wrong_password
    Ok(())
}
