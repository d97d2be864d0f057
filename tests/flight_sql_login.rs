//! arrow-flight's Flight SQL client logs in to the authentication recipe's
//! server through the Handshake, and its token works on later calls.

use std::time::Duration;

use arrow_flight::Action;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::timeout;
use tonic::transport::Channel;

#[tokio::test]
async fn the_flight_sql_client_logs_in_and_its_token_works() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(flight_cookbook::basic_auth_server::serve(listener, async {
        let _ = stopped.await;
    }));
    let limit = Duration::from_secs(30);

    let channel = Channel::from_shared(url).expect("url");
    let channel = timeout(limit, channel.connect())
        .await
        .expect("in time")
        .expect("connect");
    let mut sql = FlightSqlServiceClient::new(channel.clone());
    let login = timeout(limit, sql.handshake("test", "password"))
        .await
        .expect("in time");
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

    let mut raw = FlightServiceClient::new(channel);
    let mut request = tonic::Request::new(Action::new("echo", "hi"));
    let bearer = format!("Bearer {token}").parse().expect("header value");
    request.metadata_mut().insert("authorization", bearer);
    let mut results = timeout(limit, raw.do_action(request))
        .await
        .expect("in time")
        .expect("the token is accepted")
        .into_inner();
    let mut bodies = Vec::new();
    while let Some(result) = results.message().await.expect("a result") {
        bodies.push(result.body);
    }
    assert_eq!(bodies, ["echo", "hi"]);

    sql.clear_token();
    let wrong = timeout(limit, sql.handshake("test", "wrong"))
        .await
        .expect("in time");
    let error = wrong.expect_err("a wrong password is refused").to_string();
    assert!(
        error.contains("Unknown user or invalid password"),
        "{error}"
    );

    stop.send(()).expect("the server is still running");
    let stopped = timeout(limit, server).await.expect("the server stops");
    stopped
        .expect("the server task")
        .expect("the server ends cleanly");
}
