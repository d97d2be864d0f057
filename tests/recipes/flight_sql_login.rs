//! arrow-flight's Flight SQL client logs in to the authentication recipe's
//! server through the Handshake, and its token works on later calls.

use crate::common;

use crate::basic_auth_server;

use arrow_flight::Action;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use common::{TestServer, within};

#[tokio::test]
async fn the_flight_sql_client_logs_in_and_its_token_works() {
    let server = TestServer::start(basic_auth_server::serve).await;
    let channel = server.channel().await;
    let mut sql = FlightSqlServiceClient::new(channel.clone());
    let login = within("the login", sql.handshake("test", "password")).await;
    login.expect("the Flight SQL client logs in");
    let token = sql
        .token()
        .cloned()
        .expect("the client kept the bearer token");
    assert_eq!(
        token.len(),
        43,
        "32 random bytes in URL-safe base64: {token}"
    );

    let mut raw = FlightServiceClient::new(channel.clone());
    let mut request = tonic::Request::new(Action::new("echo", "hi"));
    let bearer = format!("Bearer {token}").parse().expect("header value");
    request.metadata_mut().insert("authorization", bearer);
    let mut results = within("the echo call", raw.do_action(request))
        .await
        .expect("the token is accepted")
        .into_inner();
    let mut bodies = Vec::new();
    while let Some(result) = within("a result", results.message())
        .await
        .expect("a result")
    {
        bodies.push(result.body);
    }
    assert_eq!(bodies, ["echo", "hi"]);

    sql.clear_token();
    let wrong = within("the second login", sql.handshake("test", "wrong")).await;
    let error = wrong.expect_err("a wrong password is refused").to_string();
    assert!(
        error.contains("Unknown user or invalid password"),
        "{error}"
    );

    drop((sql, raw, channel));
    server.stop().await;
}
