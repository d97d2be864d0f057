// ANCHOR: uses
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::{Engine, alphabet};
use futures::stream::{self, BoxStream};
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
#[cfg(unix)]
use tokio::signal::unix::{SignalKind, signal};
use tonic::body::Body;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};
use tower::{Layer, Service};
// ANCHOR_END: uses

// ANCHOR: echo
/// The user a call was authenticated as: [`BasicAuthLayer`] puts it in the
/// request's extensions, where the service finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User(pub String);

/// A Flight service whose only real call is `do_action`.
pub struct EchoServer;

#[tonic::async_trait]
impl FlightService for EchoServer {
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;

    /// `whoami` answers with the caller's user name; any other action with
    /// two results, the action's type and the action's body.
    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let user = request.extensions().get::<User>().cloned();
        let action = request.into_inner();
        let bodies = match (action.r#type.as_str(), user) {
            ("whoami", Some(User(name))) => vec![name.into()],
            ("whoami", None) => {
                return Err(Status::unauthenticated("the call has no user"));
            }
            _ => vec![action.r#type.into(), action.body],
        };
        let results = bodies
            .into_iter()
            .map(|body| Ok(arrow_flight::Result { body }));
        Ok(Response::new(Box::pin(stream::iter(results))))
    }
    // ANCHOR_END: echo

    // ANCHOR: handshake
    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        let response = HandshakeResponse::default();
        Ok(Response::new(Box::pin(stream::iter([Ok(response)]))))
    }
    // ANCHOR_END: handshake

    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoPutStream = BoxStream<'static, Result<PutResult, Status>>;
    type DoExchangeStream = BoxStream<'static, Result<FlightData, Status>>;
    type ListActionsStream = BoxStream<'static, Result<ActionType, Status>>;

    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        Err(Status::unimplemented("list_flights is not offered"))
    }

    async fn get_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(Status::unimplemented("get_flight_info is not offered"))
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented("poll_flight_info is not offered"))
    }

    async fn get_schema(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        Err(Status::unimplemented("get_schema is not offered"))
    }

    async fn do_get(
        &self,
        _request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        Err(Status::unimplemented("do_get is not offered"))
    }

    async fn do_put(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        Err(Status::unimplemented("do_put is not offered"))
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("do_exchange is not offered"))
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        Err(Status::unimplemented("list_actions is not offered"))
    }
}

/// Standard base64, with or without its `=` padding: ADBC's Flight SQL
/// driver, for one, sends Basic credentials without it.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

// ANCHOR: tokens
/// How long an issued token stays valid, and how many tokens are kept.
#[derive(Clone, Copy, Debug)]
pub struct TokenPolicy {
    pub lifetime: Duration,
    pub capacity: usize,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        TokenPolicy {
            lifetime: Duration::from_secs(60 * 60),
            capacity: 10_000,
        }
    }
}

/// Bearer tokens issued at login, each mapped to its user and its expiry
/// (`None`: a lifetime too long to count, which never ends).
pub struct TokenStore {
    policy: TokenPolicy,
    users: HashMap<String, (String, Option<Instant>)>,
    by_age: VecDeque<(Option<Instant>, String)>,
}

impl TokenStore {
    pub fn new(policy: TokenPolicy) -> Self {
        TokenStore {
            policy,
            users: HashMap::new(),
            by_age: VecDeque::new(),
        }
    }

    /// Makes a new random token for `user`, forgetting expired tokens and,
    /// when the store is full, the oldest one.
    pub fn issue(&mut self, user: &str) -> String {
        let now = Instant::now();
        while let Some((expires, token)) = self.by_age.front() {
            let expired = expires.is_some_and(|expires| expires <= now);
            if !expired && self.users.len() < self.policy.capacity.max(1) {
                break;
            }
            self.users.remove(token);
            self.by_age.pop_front();
        }
        let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let expires = now.checked_add(self.policy.lifetime);
        self.users
            .insert(token.clone(), (user.to_string(), expires));
        self.by_age.push_back((expires, token.clone()));
        token
    }

    /// The user a token was issued to, if the token is known and not expired.
    pub fn user(&self, token: &str) -> Option<&str> {
        match self.users.get(token) {
            Some((user, expires)) if expires.is_none_or(|e| e > Instant::now()) => {
                Some(user)
            }
            _ => None,
        }
    }
}
// ANCHOR_END: tokens

// ANCHOR: check
/// The longest `authorization` value we look at; longer ones are refused.
pub const MAX_AUTHORIZATION_LEN: usize = 4096;

/// Checks the credentials of one call. It answers with the caller's
/// [`User`], and, after a successful login, the `Bearer <token>` value to
/// send back; after a valid bearer token, with `None`.
pub struct Authenticator {
    passwords: HashMap<String, String>,
    tokens: Mutex<TokenStore>,
}

impl Authenticator {
    pub fn new(passwords: HashMap<String, String>, policy: TokenPolicy) -> Self {
        Authenticator {
            passwords,
            tokens: Mutex::new(TokenStore::new(policy)),
        }
    }

    pub fn check(
        &self,
        headers: &HeaderMap,
    ) -> Result<(User, Option<HeaderValue>), Status> {
        let Some(value) = headers.get(AUTHORIZATION) else {
            return Err(Status::unauthenticated("No credentials supplied"));
        };
        if value.len() > MAX_AUTHORIZATION_LEN {
            return Err(Status::invalid_argument(format!(
                "authorization header is {} bytes long, \
                 the limit is {MAX_AUTHORIZATION_LEN}",
                value.len()
            )));
        }
        let value = value.to_str().map_err(|_| {
            Status::invalid_argument("authorization header is not printable ASCII")
        })?;
        match value.split_once(' ') {
            Some(("Basic", credentials)) => {
                let (user, bearer) = self.log_in(credentials)?;
                Ok((user, Some(bearer)))
            }
            Some(("Bearer", token)) => Ok((self.check_token(token)?, None)),
            Some((scheme, _)) => Err(Status::invalid_argument(format!(
                "authorization scheme {:?} is not supported: \
                 use \"Basic\" or \"Bearer\"",
                &scheme[..scheme.len().min(16)]
            ))),
            None => Err(Status::invalid_argument(
                "authorization header must be \"Basic <credentials>\" \
                 or \"Bearer <token>\"",
            )),
        }
    }
    // ANCHOR_END: check

    // ANCHOR: log_in
    fn log_in(&self, credentials: &str) -> Result<(User, HeaderValue), Status> {
        let decoded = BASE64.decode(credentials).map_err(|_| {
            Status::invalid_argument("Basic credentials are not valid base64")
        })?;
        let decoded = String::from_utf8(decoded).map_err(|_| {
            Status::invalid_argument("Basic credentials are not valid UTF-8")
        })?;
        let Some((user, password)) = decoded.split_once(':') else {
            return Err(Status::invalid_argument(
                "Basic credentials must have the form user:password",
            ));
        };
        // ANCHOR: copy_check_password
        let expected = self.passwords.get(user);
        let same = password
            .as_bytes()
            .ct_eq(expected.map_or(&[][..], |p| p.as_bytes()));
        if expected.is_none() || password.is_empty() || !bool::from(same) {
            return Err(Status::unauthenticated(
                "Unknown user or invalid password",
            ));
        }
        // ANCHOR_END: copy_check_password
        let token = self.tokens().issue(user);
        let bearer =
            HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| {
                Status::internal("the new token is not a valid header value")
            })?;
        Ok((User(user.to_string()), bearer))
    }

    fn check_token(&self, token: &str) -> Result<User, Status> {
        match self.tokens().user(token) {
            Some(user) => Ok(User(user.to_string())),
            None => Err(Status::unauthenticated("Invalid token")),
        }
    }

    /// The token store, also after a thread panicked while holding it.
    pub fn tokens(&self) -> std::sync::MutexGuard<'_, TokenStore> {
        self.tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
// ANCHOR_END: log_in

// ANCHOR: layer
/// A tower layer that authenticates every call before the Flight service
/// sees it, and hands a new bearer token back after a login.
#[derive(Clone)]
pub struct BasicAuthLayer {
    auth: Arc<Authenticator>,
}

impl BasicAuthLayer {
    pub fn new(auth: Arc<Authenticator>) -> Self {
        BasicAuthLayer { auth }
    }
}

impl<S> Layer<S> for BasicAuthLayer {
    type Service = BasicAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BasicAuth {
            inner,
            auth: Arc::clone(&self.auth),
        }
    }
}

#[derive(Clone)]
pub struct BasicAuth<S> {
    inner: S,
    auth: Arc<Authenticator>,
}
// ANCHOR_END: layer

// ANCHOR: layer_call
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<http::Request<B>> for BasicAuth<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    // ANCHOR: copy_service_head
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // ANCHOR_END: copy_service_head
        let mut request = request;
        let (user, bearer) = match self.auth.check(request.headers()) {
            Ok(checked) => checked,
            Err(status) => {
                eprintln!("refused {}: {}", request.uri().path(), status.message());
                return Box::pin(async move { Ok(status.into_http()) });
            }
        };
        request.extensions_mut().insert(user);
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        Box::pin(async move {
            let mut response = inner.call(request).await?;
            if let Some(bearer) = bearer {
                response.headers_mut().insert(AUTHORIZATION, bearer);
            }
            Ok(response)
        })
    }
}
// ANCHOR_END: layer_call

// ANCHOR: copy_header_limit
/// The most a call's headers may take, counted as HTTP/2 counts them: each
/// header's name and value, and 32 bytes.
pub const MAX_HEADER_LIST_SIZE: usize = 16 * 1024;

/// The header list HTTP/2 decodes and passes on to `limit_headers`. Up to
/// four times as much, h2 answers HTTP 431 itself; beyond that, or sent in
/// more than 81 frames, it closes the connection.
pub const HTTP2_MAX_HEADER_LIST_SIZE: u32 = 1024 * 1024;

/// Refuses a call whose headers take more than `MAX_HEADER_LIST_SIZE`, with
/// `ResourceExhausted` as gRPC C++ servers do: the call fails alone, and the
/// other calls on its connection go on.
pub fn limit_headers(request: Request<()>) -> Result<Request<()>, Status> {
    let headers = request.metadata().as_ref().iter();
    let size: usize = headers
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum();
    if size > MAX_HEADER_LIST_SIZE {
        return Err(Status::resource_exhausted(format!(
            "the call's headers take {size} bytes, the limit is \
             {MAX_HEADER_LIST_SIZE} bytes"
        )));
    }
    Ok(request)
}
// ANCHOR_END: copy_header_limit

// ANCHOR: serve
/// Serves the echo service behind the authentication layer on `listener`
/// until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let passwords = HashMap::from([("test".to_string(), "password".to_string())]);
    let auth = Arc::new(Authenticator::new(passwords, TokenPolicy::default()));
    Server::builder()
        .http2_max_header_list_size(HTTP2_MAX_HEADER_LIST_SIZE)
        .layer(BasicAuthLayer::new(auth))
        .add_service(FlightServiceServer::with_interceptor(
            EchoServer,
            limit_headers,
        ))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1);
    let listener =
        TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:8816")).await?;

    // ANCHOR: copy_stop_on_signal
    #[cfg(unix)]
    let mut interrupt = signal(SignalKind::interrupt())?;
    #[cfg(unix)]
    let mut terminate = signal(SignalKind::terminate())?;
    let stop = async move {
        #[cfg(unix)]
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    // ANCHOR_END: copy_stop_on_signal
    println!("Serving on grpc://{}", listener.local_addr()?);
    serve(listener, stop).await?;
    Ok(())
}
// ANCHOR_END: serve
