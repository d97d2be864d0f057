//! Robustness and security tests of the basic authentication recipe
//! (`examples/basic_auth_server.rs`): the credential check on hand-made
//! headers, the token store's expiry and capacity, and the whole server over
//! gRPC with well-formed and malformed `authorization` values.

use crate::common;

use crate::basic_auth_server;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::{
    Action, Criteria, Empty, FlightClient, FlightData, FlightDescriptor,
    HandshakeRequest, Ticket,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use basic_auth_server::{
    Authenticator, BasicAuthLayer, EchoServer, MAX_AUTHORIZATION_LEN, TokenPolicy,
    TokenStore, User, serve,
};
use common::{TestServer, within};
use futures::{StreamExt, stream};
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue};
use tonic::metadata::{Ascii, MetadataKey, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

// ---------------------------------------------------------------------------
// Helpers for the unit-level tests
// ---------------------------------------------------------------------------

/// An authenticator that knows the users `test` and `other`.
fn authenticator(policy: TokenPolicy) -> Authenticator {
    let passwords = HashMap::from([
        ("test".to_string(), "password".to_string()),
        ("other".to_string(), "s3cret:with:colons".to_string()),
    ]);
    Authenticator::new(passwords, policy)
}

/// `Basic <base64 of user:password>`.
fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// A header map with one `authorization` value made of arbitrary bytes.
fn headers(value: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    let value = HeaderValue::from_bytes(value).expect("a valid header value");
    map.insert(AUTHORIZATION, value);
    map
}

/// Asserts that a status message is clean (see
/// [`common::assert_clean_message`]) and does not repeat the secret that
/// was sent.
fn assert_clean_message(message: &str, secret: Option<&str>) {
    assert!(message.len() < 200, "a short message: {message:?}");
    common::assert_clean_message(message, &[]);
    if let Some(secret) = secret.filter(|secret| secret.len() >= 4) {
        assert!(
            !message.contains(secret),
            "the message {message:?} repeats the secret {secret:?}"
        );
    }
}

/// Asserts that `status` has `code` and a clean message containing `needle`.
fn assert_status(status: &Status, code: Code, needle: &str, secret: Option<&str>) {
    assert_eq!(
        status.code(),
        code,
        "wrong code for {:?}: {status:?}",
        status.message()
    );
    assert!(
        status.message().contains(needle),
        "the message {:?} should contain {needle:?}",
        status.message()
    );
    assert_clean_message(status.message(), secret);
}

/// Asserts that checking `value` fails with `code` and a message containing
/// `needle`.
fn assert_refused(auth: &Authenticator, value: &[u8], code: Code, needle: &str) {
    let secret = String::from_utf8_lossy(value).into_owned();
    match auth.check(&headers(value)) {
        Ok(answer) => panic!(
            "{:?} was accepted: {answer:?}",
            String::from_utf8_lossy(&value[..value.len().min(80)])
        ),
        Err(status) => assert_status(&status, code, needle, Some(&secret)),
    }
}

/// The token of a `Bearer <token>` value, checked to be 32 or more random
/// bytes in URL-safe base64 without padding.
fn token_of(bearer: &HeaderValue) -> String {
    let bearer = bearer.to_str().expect("an ASCII bearer value");
    let token = bearer
        .strip_prefix("Bearer ")
        .unwrap_or_else(|| panic!("{bearer:?} starts with \"Bearer \""));
    assert_eq!(token.len(), 43, "32 bytes in unpadded base64: {token:?}");
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .unwrap_or_else(|e| panic!("{token:?} is URL-safe base64: {e}"));
    assert!(bytes.len() >= 32, "{} random bytes", bytes.len());
    token.to_string()
}

/// Logs in with `check` and returns the new token.
fn log_in(auth: &Authenticator, user: &str, password: &str) -> String {
    let bearer = auth
        .check(&headers(basic(user, password).as_bytes()))
        .expect("the login succeeds");
    assert_eq!(bearer.0, User(user.to_string()), "a login knows its user");
    let bearer = bearer.1.expect("a login answers with a bearer token");
    token_of(&bearer)
}

/// An authenticator whose store holds one token, and that token: a token
/// issued later takes its place, so that it is still valid proves that no
/// other token was issued.
fn authenticator_with_one_token() -> (Authenticator, String) {
    let auth = authenticator(TokenPolicy {
        capacity: 1,
        ..TokenPolicy::default()
    });
    let token = log_in(&auth, "test", "password");
    (auth, token)
}

/// The malformed `authorization` values, each with the code and a part of
/// the message it must be refused with.
fn malformed_values() -> Vec<(&'static str, Vec<u8>, Code, &'static str)> {
    let long = format!("Basic {}", "A".repeat(MAX_AUTHORIZATION_LEN));
    let non_utf8 = format!("Basic {}", STANDARD.encode(b"test:\xff\xfepassword"));
    let non_utf8_user = format!("Basic {}", STANDARD.encode(b"\xc3\x28:password"));
    let no_colon = format!("Basic {}", STANDARD.encode("testpassword"));
    let good = STANDARD.encode("test:password");
    vec![
        (
            "bad base64",
            b"Basic not*base64!".to_vec(),
            Code::InvalidArgument,
            "not valid base64",
        ),
        (
            "base64 with too much padding",
            b"Basic dGVzdDpwYXNzd29yZA===".to_vec(),
            Code::InvalidArgument,
            "not valid base64",
        ),
        (
            "URL-safe base64 instead of the standard alphabet",
            format!(
                "Basic {}",
                URL_SAFE_NO_PAD.encode([0xfb, 0xff, 0xfe, b':', b'x'])
            )
            .into_bytes(),
            Code::InvalidArgument,
            "not valid base64",
        ),
        (
            "two spaces after the scheme",
            format!("Basic  {good}").into_bytes(),
            Code::InvalidArgument,
            "not valid base64",
        ),
        (
            "no colon",
            no_colon.into_bytes(),
            Code::InvalidArgument,
            "user:password",
        ),
        (
            "empty credentials",
            b"Basic ".to_vec(),
            Code::InvalidArgument,
            "user:password",
        ),
        (
            "non-UTF-8 password",
            non_utf8.into_bytes(),
            Code::InvalidArgument,
            "not valid UTF-8",
        ),
        (
            "non-UTF-8 user",
            non_utf8_user.into_bytes(),
            Code::InvalidArgument,
            "not valid UTF-8",
        ),
        (
            "an opaque 0xff byte",
            b"Basic \xff\xfe".to_vec(),
            Code::InvalidArgument,
            "not printable ASCII",
        ),
        (
            "Latin-1 text",
            b"Basic caf\xe9".to_vec(),
            Code::InvalidArgument,
            "not printable ASCII",
        ),
        (
            "a lower-case scheme",
            format!("basic {good}").into_bytes(),
            Code::InvalidArgument,
            "\"basic\" is not supported",
        ),
        (
            "an upper-case scheme",
            b"BEARER abcdef".to_vec(),
            Code::InvalidArgument,
            "\"BEARER\" is not supported",
        ),
        (
            "an unknown scheme",
            b"Digest username=\"test\"".to_vec(),
            Code::InvalidArgument,
            "\"Digest\" is not supported",
        ),
        (
            "a very long unknown scheme",
            format!("{} x", "S".repeat(1000)).into_bytes(),
            Code::InvalidArgument,
            "is not supported",
        ),
        (
            "no space",
            format!("Basic{good}").into_bytes(),
            Code::InvalidArgument,
            "must be \"Basic <credentials>\" or \"Bearer <token>\"",
        ),
        (
            "a tab instead of a space",
            format!("Basic\t{good}").into_bytes(),
            Code::InvalidArgument,
            "must be \"Basic <credentials>\" or \"Bearer <token>\"",
        ),
        (
            "an empty value",
            b"".to_vec(),
            Code::InvalidArgument,
            "must be \"Basic <credentials>\" or \"Bearer <token>\"",
        ),
        (
            "a value one byte over the limit",
            long.into_bytes(),
            Code::InvalidArgument,
            "the limit is 4096",
        ),
        (
            "a value of 8 KiB",
            vec![b'B'; 8 * 1024],
            Code::InvalidArgument,
            "8192 bytes long",
        ),
        (
            "wrong password",
            basic("test", "wrong").into_bytes(),
            Code::Unauthenticated,
            "Unknown user or invalid password",
        ),
        (
            "unknown user",
            basic("nobody", "password").into_bytes(),
            Code::Unauthenticated,
            "Unknown user or invalid password",
        ),
        (
            "empty password",
            basic("test", "").into_bytes(),
            Code::Unauthenticated,
            "Unknown user or invalid password",
        ),
        (
            "empty user",
            basic("", "password").into_bytes(),
            Code::Unauthenticated,
            "Unknown user or invalid password",
        ),
        (
            "an unknown bearer token",
            format!("Bearer {}", URL_SAFE_NO_PAD.encode([7u8; 32])).into_bytes(),
            Code::Unauthenticated,
            "Invalid token",
        ),
        (
            "an empty bearer token",
            b"Bearer ".to_vec(),
            Code::Unauthenticated,
            "Invalid token",
        ),
        (
            "the password as a bearer token",
            b"Bearer password".to_vec(),
            Code::Unauthenticated,
            "Invalid token",
        ),
    ]
}

// ---------------------------------------------------------------------------
// Authenticator::check
// ---------------------------------------------------------------------------

#[test]
fn a_call_without_credentials_is_unauthenticated() {
    let auth = authenticator(TokenPolicy::default());
    let status = auth.check(&HeaderMap::new()).expect_err("no header");
    assert_status(
        &status,
        Code::Unauthenticated,
        "No credentials supplied",
        None,
    );

    // Other headers do not count as credentials.
    let mut map = HeaderMap::new();
    map.insert(
        "proxy-authorization",
        HeaderValue::from_static("Basic dGVzdDpwYXNzd29yZA=="),
    );
    map.insert(
        "x-authorization",
        HeaderValue::from_static("Basic dGVzdDpwYXNzd29yZA=="),
    );
    let status = auth.check(&map).expect_err("no authorization header");
    assert_status(
        &status,
        Code::Unauthenticated,
        "No credentials supplied",
        None,
    );
}

#[test]
fn the_header_name_is_case_insensitive() {
    let auth = authenticator(TokenPolicy::default());
    for name in [
        "authorization",
        "Authorization",
        "AUTHORIZATION",
        "aUtHoRiZaTiOn",
    ] {
        let mut map = HeaderMap::new();
        let name = HeaderName::from_bytes(name.as_bytes()).expect("a header name");
        let value =
            HeaderValue::try_from(basic("test", "password")).expect("a value");
        map.insert(name, value);
        let bearer = auth.check(&map).expect("the login succeeds");
        token_of(&bearer.1.expect("a bearer token"));
    }
}

#[test]
fn a_good_login_answers_with_a_fresh_random_bearer_token() {
    let auth = authenticator(TokenPolicy::default());
    let mut seen = HashSet::new();
    for _ in 0..1000 {
        let token = log_in(&auth, "test", "password");
        assert!(seen.insert(token.clone()), "the token {token} came twice");
        // The token is usable at once, and belongs to the user who logged in.
        let bearer = format!("Bearer {token}");
        assert_eq!(
            auth.check(&headers(bearer.as_bytes())).expect("valid"),
            (User("test".to_string()), None)
        );
        assert_eq!(auth.tokens().user(&token), Some("test"));
    }
    // A password may itself contain colons: only the first one separates.
    let token = log_in(&auth, "other", "s3cret:with:colons");
    assert_eq!(auth.tokens().user(&token), Some("other"));
    // The 1000 tokens share no long common prefix, as random ones would not.
    let first: HashSet<_> = seen.iter().map(|token| &token[..8]).collect();
    assert!(first.len() > 990, "only {} distinct prefixes", first.len());
}

#[test]
fn malformed_and_wrong_credentials_are_refused_with_a_clear_reason() {
    let (auth, token) = authenticator_with_one_token();
    for (what, value, code, needle) in malformed_values() {
        let secret = String::from_utf8_lossy(&value).into_owned();
        match auth.check(&headers(&value)) {
            Ok(answer) => panic!("{what}: accepted with {answer:?}"),
            Err(status) => {
                assert_eq!(status.code(), code, "{what}: {status:?}");
                assert!(
                    status.message().contains(needle),
                    "{what}: {:?} should contain {needle:?}",
                    status.message()
                );
                // The secret is only checked for values that hold a real
                // password; the scheme echo is short and expected.
                let secret = what.contains("password").then_some(secret.as_str());
                assert_clean_message(status.message(), secret);
            }
        }
    }
    // An unknown scheme is echoed, but only its first 16 characters.
    let long_scheme = format!("{} x", "S".repeat(1000));
    let status = auth
        .check(&headers(long_scheme.as_bytes()))
        .expect_err("refused");
    assert!(
        status
            .message()
            .contains(&format!("\"{}\"", "S".repeat(16)))
    );
    assert!(!status.message().contains(&"S".repeat(17)), "{status:?}");
    // None of the refusals issued a token.
    assert_eq!(auth.tokens().user(&token), Some("test"));
}

#[test]
fn credentials_are_accepted_with_or_without_their_base64_padding() {
    let auth = authenticator(TokenPolicy::default());
    // "test:password" is 13 bytes: canonical base64 ends in "==". ADBC's
    // Flight SQL driver sends it without.
    for credentials in [
        "dGVzdDpwYXNzd29yZA==",
        "dGVzdDpwYXNzd29yZA=",
        "dGVzdDpwYXNzd29yZA",
    ] {
        let value = format!("Basic {credentials}");
        let bearer = auth.check(&headers(value.as_bytes()));
        let bearer = bearer.unwrap_or_else(|e| panic!("{credentials}: {e:?}"));
        let token = token_of(&bearer.1.expect("a login answers with a token"));
        assert_eq!(auth.tokens().user(&token), Some("test"));
    }
}

#[test]
fn wrong_passwords_and_unknown_users_get_the_same_answer() {
    let auth = authenticator(TokenPolicy::default());
    let answers: Vec<_> = [
        ("test", "wrong"),
        ("test", "passwor"),
        ("test", "password "),
        ("test", "Password"),
        ("test", "passwordpassword"),
        ("nobody", "password"),
        ("", ""),
        ("test", ""),
        ("other", "s3cret"),
    ]
    .into_iter()
    .map(|(user, password)| {
        let status = auth
            .check(&headers(basic(user, password).as_bytes()))
            .expect_err("refused");
        // The answer is the fixed message below (checked after), which
        // therefore repeats none of the passwords that were tried.
        assert_clean_message(status.message(), None);
        (status.code(), status.message().to_string())
    })
    .collect();
    for answer in &answers {
        assert_eq!(
            answer,
            &(
                Code::Unauthenticated,
                "Unknown user or invalid password".to_string()
            )
        );
    }
}

#[test]
fn values_over_the_limit_are_refused_before_they_are_parsed() {
    let auth = authenticator(TokenPolicy::default());
    // Exactly at the limit, a well-formed but wrong login is looked at...
    let filler = "x".repeat(MAX_AUTHORIZATION_LEN);
    let mut at_limit = basic("test", &filler);
    while at_limit.len() > MAX_AUTHORIZATION_LEN {
        at_limit.pop();
        while STANDARD.decode(&at_limit["Basic ".len()..]).is_err() {
            at_limit.pop();
        }
    }
    assert!(at_limit.len() <= MAX_AUTHORIZATION_LEN);
    assert_refused(
        &auth,
        at_limit.as_bytes(),
        Code::Unauthenticated,
        "Unknown user or invalid password",
    );
    let mut bearer_at_limit = "Bearer ".to_string();
    bearer_at_limit.extend(std::iter::repeat_n('t', MAX_AUTHORIZATION_LEN - 7));
    assert_eq!(bearer_at_limit.len(), MAX_AUTHORIZATION_LEN);
    assert_refused(
        &auth,
        bearer_at_limit.as_bytes(),
        Code::Unauthenticated,
        "Invalid token",
    );
    bearer_at_limit.push('t');
    assert_refused(
        &auth,
        bearer_at_limit.as_bytes(),
        Code::InvalidArgument,
        "4097 bytes long, the limit is 4096",
    );
    // ... one byte more is not, whatever it holds, and the message says why.
    for size in [MAX_AUTHORIZATION_LEN + 1, 64 * 1024, 1024 * 1024] {
        let mut value = basic("test", "password").into_bytes();
        value.resize(size, b'=');
        let expected =
            format!("{size} bytes long, the limit is {MAX_AUTHORIZATION_LEN}");
        assert_refused(&auth, &value, Code::InvalidArgument, &expected);
        let mut opaque = vec![0xffu8; size];
        opaque[..6].copy_from_slice(b"Basic ");
        assert_refused(&auth, &opaque, Code::InvalidArgument, &expected);
    }
}

#[test]
fn a_known_bearer_token_is_accepted_and_an_unknown_one_is_not() {
    let auth = authenticator(TokenPolicy::default());
    let token = log_in(&auth, "test", "password");
    let bearer = format!("Bearer {token}");
    assert_eq!(
        auth.check(&headers(bearer.as_bytes())).expect("valid"),
        (User("test".to_string()), None)
    );

    // Any change to the token makes it unknown.
    let mut changed = token.clone().into_bytes();
    changed[0] = if changed[0] == b'A' { b'B' } else { b'A' };
    let changed = String::from_utf8(changed).expect("ASCII");
    for unknown in [
        changed.as_str(),
        &token[..42],
        &format!("{token}A"),
        &format!("{token} "),
        &format!(" {token}"),
        &token.to_lowercase(),
    ] {
        if unknown == token {
            continue;
        }
        let value = format!("Bearer {unknown}");
        assert_refused(
            &auth,
            value.as_bytes(),
            Code::Unauthenticated,
            "Invalid token",
        );
    }
    // The token is not a password, nor the password a token.
    assert_refused(
        &auth,
        basic("test", &token).as_bytes(),
        Code::Unauthenticated,
        "Unknown user or invalid password",
    );
}

#[test]
fn a_poisoned_token_store_still_works() {
    let auth = Arc::new(authenticator(TokenPolicy::default()));
    let token = log_in(&auth, "test", "password");
    let holder = Arc::clone(&auth);
    let panicked = std::thread::spawn(move || {
        let _guard = holder.tokens();
        panic!("a panic while the token store is locked (expected by this test)");
    })
    .join();
    assert!(panicked.is_err(), "the thread panicked");
    let bearer = format!("Bearer {token}");
    assert_eq!(
        auth.check(&headers(bearer.as_bytes())).expect("valid"),
        (User("test".to_string()), None)
    );
    log_in(&auth, "test", "password");
}

// ---------------------------------------------------------------------------
// TokenStore
// ---------------------------------------------------------------------------

#[test]
fn expired_tokens_are_refused() {
    let policy = TokenPolicy {
        lifetime: Duration::from_millis(50),
        capacity: 1000,
    };
    let auth = authenticator(policy);
    let token = log_in(&auth, "test", "password");
    let bearer = format!("Bearer {token}");
    assert_eq!(
        auth.check(&headers(bearer.as_bytes())).expect("fresh"),
        (User("test".to_string()), None)
    );

    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(auth.tokens().user(&token), None);
    assert_refused(
        &auth,
        bearer.as_bytes(),
        Code::Unauthenticated,
        "Invalid token",
    );

    // The next login's token works; the expired one stays refused.
    let fresh = log_in(&auth, "test", "password");
    assert_eq!(auth.tokens().user(&fresh), Some("test"));
    assert_eq!(auth.tokens().user(&token), None);
}

#[test]
fn a_zero_lifetime_token_is_never_valid() {
    let mut store = TokenStore::new(TokenPolicy {
        lifetime: Duration::ZERO,
        capacity: 10,
    });
    let token = store.issue("test");
    assert_eq!(store.user(&token), None);
}

/// A lifetime too long to add to the clock (tokens that never expire) must
/// not make logins panic.
#[test]
fn a_huge_lifetime_does_not_panic() {
    let auth = authenticator(TokenPolicy {
        lifetime: Duration::MAX,
        capacity: 10,
    });
    let token = log_in(&auth, "test", "password");
    assert_eq!(auth.tokens().user(&token), Some("test"));
}

#[test]
fn the_store_holds_at_most_its_capacity_and_forgets_the_oldest() {
    const CAPACITY: usize = 1000;
    const ISSUES: usize = 100_000;
    let mut store = TokenStore::new(TokenPolicy {
        lifetime: Duration::from_secs(3600),
        capacity: CAPACITY,
    });
    let mut tokens = Vec::with_capacity(ISSUES);
    for i in 0..ISSUES {
        tokens.push(store.issue(if i.is_multiple_of(2) { "even" } else { "odd" }));
        // At every step the store knows the last CAPACITY tokens, no more.
        if let Some(forgotten) = i.checked_sub(CAPACITY) {
            assert_eq!(store.user(&tokens[forgotten]), None, "token {forgotten}");
            let oldest = forgotten + 1;
            assert!(store.user(&tokens[oldest]).is_some(), "token {oldest}");
        }
    }
    assert_eq!(tokens.iter().collect::<HashSet<_>>().len(), ISSUES);

    let (evicted, kept) = tokens.split_at(ISSUES - CAPACITY);
    for (i, token) in kept.iter().enumerate() {
        let i = ISSUES - CAPACITY + i;
        let user = if i.is_multiple_of(2) { "even" } else { "odd" };
        assert_eq!(store.user(token), Some(user), "token {i} is still valid");
    }
    for (i, token) in evicted.iter().enumerate() {
        assert_eq!(store.user(token), None, "token {i} was forgotten");
    }
}

#[test]
fn many_logins_through_the_authenticator_stay_within_capacity() {
    let auth = authenticator(TokenPolicy {
        lifetime: Duration::from_secs(3600),
        capacity: 100,
    });
    let tokens: Vec<_> = (0..5000)
        .map(|_| log_in(&auth, "test", "password"))
        .collect();
    for token in &tokens[..4900] {
        let bearer = format!("Bearer {token}");
        assert_refused(
            &auth,
            bearer.as_bytes(),
            Code::Unauthenticated,
            "Invalid token",
        );
    }
    for token in &tokens[4900..] {
        let bearer = format!("Bearer {token}");
        assert_eq!(
            auth.check(&headers(bearer.as_bytes())).expect("kept"),
            (User("test".to_string()), None)
        );
    }
}

#[test]
fn a_zero_capacity_store_keeps_the_newest_token() {
    let mut store = TokenStore::new(TokenPolicy {
        lifetime: Duration::from_secs(60),
        capacity: 0,
    });
    let first = store.issue("test");
    let second = store.issue("test");
    assert_eq!(store.user(&first), None);
    assert_eq!(store.user(&second), Some("test"));
}

// ---------------------------------------------------------------------------
// End to end over gRPC
// ---------------------------------------------------------------------------

/// A client on its own clone of `channel`.
fn client_on(channel: &Channel) -> FlightServiceClient<Channel> {
    FlightServiceClient::new(channel.clone())
}

/// Sends `echo` with `body` on do_action with the given `authorization`
/// value, and returns the result bodies and the response's authorization.
async fn echo_with(
    client: &mut FlightServiceClient<Channel>,
    authorization: Option<MetadataValue<Ascii>>,
    body: &str,
) -> Result<(Vec<Vec<u8>>, Option<String>), Status> {
    let mut request = Request::new(Action::new("echo", body.to_string()));
    if let Some(value) = authorization {
        request.metadata_mut().insert("authorization", value);
    }
    let response = within("do_action", client.do_action(request)).await?;
    let bearer = response
        .metadata()
        .get("authorization")
        .map(|value| value.to_str().expect("ASCII").to_string());
    let mut results = response.into_inner();
    let mut bodies = Vec::new();
    while let Some(result) = within("a do_action result", results.message()).await?
    {
        bodies.push(result.body.to_vec());
    }
    Ok((bodies, bearer))
}

/// Logs in on the Handshake RPC with Basic credentials; returns the number
/// of responses and the `authorization` value of the response headers.
async fn handshake_with(
    client: &mut FlightServiceClient<Channel>,
    authorization: MetadataValue<Ascii>,
) -> Result<(usize, Option<String>), Status> {
    let mut request = Request::new(stream::iter([HandshakeRequest::default()]));
    request
        .metadata_mut()
        .insert("authorization", authorization);
    let response = within("handshake", client.handshake(request)).await?;
    let bearer = response
        .metadata()
        .get("authorization")
        .map(|value| value.to_str().expect("ASCII").to_string());
    let mut responses = response.into_inner();
    let mut count = 0;
    while within("a handshake response", responses.message())
        .await?
        .is_some()
    {
        count += 1;
    }
    Ok((count, bearer))
}

fn ascii(value: &str) -> MetadataValue<Ascii> {
    MetadataValue::try_from(value).expect("a valid metadata value")
}

/// Logs in with test/password on the Handshake and returns `Bearer <token>`.
async fn bearer_for(client: &mut FlightServiceClient<Channel>) -> String {
    let (count, bearer) = handshake_with(client, ascii(&basic("test", "password")))
        .await
        .expect("the login succeeds");
    assert_eq!(count, 1, "exactly one HandshakeResponse");
    let bearer = bearer.expect("the token is in the response headers");
    token_of(&HeaderValue::try_from(bearer.as_str()).expect("a header value"));
    bearer
}

#[tokio::test]
async fn a_login_on_the_handshake_returns_one_response_and_a_token() {
    let server = TestServer::start(serve).await;
    let channel = server.channel().await;
    let mut client = client_on(&channel);

    let bearer = bearer_for(&mut client).await;
    let (bodies, renewed) = echo_with(&mut client, Some(ascii(&bearer)), "hello")
        .await
        .expect("the token is accepted");
    assert_eq!(bodies, [b"echo".to_vec(), b"hello".to_vec()]);
    assert_eq!(renewed, None, "a bearer call gets no new token");

    // A second login gets a different token; both stay valid.
    let second = bearer_for(&mut client).await;
    assert_ne!(second, bearer);
    for bearer in [&bearer, &second] {
        echo_with(&mut client, Some(ascii(bearer)), "again")
            .await
            .expect("both tokens work");
    }

    // The Handshake with a bearer token works and issues nothing new.
    let (count, none) = handshake_with(&mut client, ascii(&bearer))
        .await
        .expect("the bearer handshake succeeds");
    assert_eq!((count, none), (1, None));

    // A wrong password on the Handshake is refused.
    let status = handshake_with(&mut client, ascii(&basic("test", "wrong")))
        .await
        .expect_err("refused");
    assert_status(
        &status,
        Code::Unauthenticated,
        "Unknown user or invalid password",
        Some("wrong"),
    );
    drop((client, channel));
    server.stop().await;
}

#[tokio::test]
async fn a_login_on_do_action_also_returns_a_token() {
    let server = TestServer::start(serve).await;
    let channel = server.channel().await;
    let mut client = client_on(&channel);
    let (bodies, bearer) =
        echo_with(&mut client, Some(ascii(&basic("test", "password"))), "x")
            .await
            .expect("a Basic login on do_action is accepted");
    assert_eq!(bodies, [b"echo".to_vec(), b"x".to_vec()]);
    let bearer = bearer.expect("the token is in the response headers");
    echo_with(&mut client, Some(ascii(&bearer)), "y")
        .await
        .expect("the token works");
    drop((client, channel));
    server.stop().await;
}

#[tokio::test]
async fn the_capitalised_header_name_works_over_grpc() {
    let server = TestServer::start(serve).await;
    let channel = server.channel().await;
    let mut client = client_on(&channel);

    // HTTP/2 sends header names in lower case; a capitalised name given to
    // the client is normalised, and the server accepts it.
    let key = MetadataKey::<Ascii>::from_bytes(b"Authorization").expect("a key");
    assert_eq!(key.as_str(), "authorization");
    let mut request = Request::new(Action::new("echo", "caps"));
    request
        .metadata_mut()
        .insert(key, ascii(&basic("test", "password")));
    let response = within("do_action", client.do_action(request))
        .await
        .expect("the login with \"Authorization\" succeeds");
    assert!(response.metadata().get("authorization").is_some());
    drop(response);

    // The high-level client takes the name as given, too.
    let mut flight = FlightClient::new(channel.clone());
    flight
        .add_header("Authorization", &basic("test", "password"))
        .expect("a header");
    let payload = within("FlightClient::handshake", flight.handshake(Vec::new()))
        .await
        .expect("the high-level client logs in");
    assert!(payload.is_empty());
    drop((client, channel));
    server.stop().await;
}

#[tokio::test]
async fn the_high_level_flight_client_handshake_succeeds() {
    let server = TestServer::start(serve).await;
    let channel = server.channel().await;

    // FlightClient::handshake insists on exactly one HandshakeResponse.
    let mut flight = FlightClient::new(channel.clone());
    flight
        .add_header("authorization", &basic("test", "password"))
        .expect("a header");
    let payload = within(
        "FlightClient::handshake",
        flight.handshake(b"hello".to_vec()),
    )
    .await
    .expect("the high-level client logs in");
    assert!(payload.is_empty(), "the server sends an empty payload");

    // With a bearer token from a raw login, it can call do_action.
    let bearer = bearer_for(&mut client_on(&channel)).await;
    let mut flight = FlightClient::new(channel.clone());
    flight
        .add_header("authorization", &bearer)
        .expect("a header");
    within("FlightClient::handshake", flight.handshake(Vec::new()))
        .await
        .expect("the bearer handshake succeeds");
    let results = within(
        "FlightClient::do_action",
        flight.do_action(Action::new("echo", "hi")),
    )
    .await
    .expect("do_action with the token");
    let bodies: Vec<_> = within("the results", results.collect::<Vec<_>>()).await;
    let bodies: Vec<_> = bodies
        .into_iter()
        .map(|body| body.expect("a result").to_vec())
        .collect();
    assert_eq!(bodies, [b"echo".to_vec(), b"hi".to_vec()]);

    // A wrong password is refused with the server's status.
    let mut flight = FlightClient::new(channel.clone());
    flight
        .add_header("authorization", &basic("test", "nope"))
        .expect("a header");
    let error = within("FlightClient::handshake", flight.handshake(Vec::new()))
        .await
        .expect_err("refused");
    let status = Status::from(error);
    assert_status(
        &status,
        Code::Unauthenticated,
        "Unknown user or invalid password",
        Some("nope"),
    );
    drop(channel);
    server.stop().await;
}

#[tokio::test]
async fn malformed_values_are_refused_over_grpc_and_the_server_keeps_serving() {
    let server = TestServer::start(serve).await;
    let channel = server.channel().await;
    let mut client = client_on(&channel);

    for (what, value, code, needle) in malformed_values() {
        let value = MetadataValue::<Ascii>::try_from(value.as_slice())
            .unwrap_or_else(|e| panic!("{what}: not sendable: {e}"));
        let status = echo_with(&mut client, Some(value), "bad")
            .await
            .expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
        assert!(
            status.message().contains(needle),
            "{what}: {:?} should contain {needle:?}",
            status.message()
        );
        assert_clean_message(status.message(), None);
    }

    // A call with no authorization at all.
    let status = echo_with(&mut client, None, "none")
        .await
        .expect_err("refused");
    assert_status(
        &status,
        Code::Unauthenticated,
        "No credentials supplied",
        None,
    );

    // After all that, a proper login and echo still work on the same channel.
    let bearer = bearer_for(&mut client).await;
    let (bodies, _) = echo_with(&mut client, Some(ascii(&bearer)), "still here")
        .await
        .expect("the server still serves");
    assert_eq!(bodies, [b"echo".to_vec(), b"still here".to_vec()]);
    drop((client, channel));
    server.stop().await;
}

#[tokio::test]
async fn values_too_large_for_http2_are_refused_and_the_server_keeps_serving() {
    let server = TestServer::start(serve).await;
    let channel = server.channel().await;
    // Larger than hyper's 16 KiB HTTP/2 header list: the server lets h2
    // decode up to 1 MiB, so the authentication layer refuses them itself,
    // naming its own limit, and nothing else breaks.
    for size in [20 * 1024, 256 * 1024] {
        let mut client = client_on(&channel);
        let mut value = basic("test", "password").into_bytes();
        value.resize(size, b'=');
        let value =
            MetadataValue::<Ascii>::try_from(value.as_slice()).expect("sendable");
        let status = echo_with(&mut client, Some(value), "huge")
            .await
            .expect_err("a huge value is refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{size} bytes");
        assert_eq!(
            status.message(),
            format!("authorization header is {size} bytes long, the limit is 4096")
        );
        assert_clean_message(status.message(), None);
    }

    // A fresh channel and the old one both still work.
    let fresh = server.channel().await;
    for mut client in [client_on(&fresh), client_on(&channel)] {
        let bearer = bearer_for(&mut client).await;
        echo_with(&mut client, Some(ascii(&bearer)), "ok")
            .await
            .expect("the server still serves");
    }
    drop((fresh, channel));
    server.stop().await;
}

#[tokio::test]
async fn every_call_needs_credentials() {
    let server = TestServer::start(serve).await;
    let channel = server.channel().await;
    let mut client = client_on(&channel);
    // Each call without credentials is refused, before its handler runs.
    macro_rules! refused {
        ($name:literal, $call:expr) => {
            assert_status(
                &within($name, $call).await.expect_err($name),
                Code::Unauthenticated,
                "No credentials supplied",
                None,
            )
        };
    }
    let cmd = || FlightDescriptor::new_cmd("x");
    let no_data = || stream::empty::<FlightData>();
    refused!(
        "handshake",
        client.handshake(stream::iter([HandshakeRequest::default()]))
    );
    refused!("list_flights", client.list_flights(Criteria::default()));
    refused!("get_flight_info", client.get_flight_info(cmd()));
    refused!("poll_flight_info", client.poll_flight_info(cmd()));
    refused!("get_schema", client.get_schema(cmd()));
    refused!("do_get", client.do_get(Ticket::new("x")));
    refused!("do_put", client.do_put(no_data()));
    refused!("do_exchange", client.do_exchange(no_data()));
    refused!("list_actions", client.list_actions(Empty::default()));

    // With a token, the unimplemented calls say so instead.
    let bearer = bearer_for(&mut client).await;
    let mut request = Request::new(Criteria::default());
    request
        .metadata_mut()
        .insert("authorization", ascii(&bearer));
    let status = within("list_flights", client.list_flights(request))
        .await
        .expect_err("list_flights is not offered");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert_clean_message(status.message(), None);
    drop((client, channel));
    server.stop().await;
}

#[tokio::test]
async fn concurrent_logins_get_distinct_working_tokens() {
    let server = TestServer::start(serve).await;
    let channel = server.channel().await;
    let logins: Vec<_> = (0..32)
        .map(|i| {
            let mut client = client_on(&channel);
            tokio::spawn(async move {
                let bearer = bearer_for(&mut client).await;
                let body = format!("call {i}");
                let (bodies, _) =
                    echo_with(&mut client, Some(ascii(&bearer)), &body)
                        .await
                        .expect("the token works");
                assert_eq!(bodies, [b"echo".to_vec(), body.into_bytes()]);
                bearer
            })
        })
        .collect();
    let mut tokens = HashSet::new();
    for login in logins {
        let bearer = within("a login task", login).await.expect("no panic");
        assert!(tokens.insert(bearer), "a token was issued twice");
    }
    drop(channel);
    server.stop().await;
}

/// Sends `whoami` with the given `authorization` value and returns the
/// answer's bodies as text.
async fn whoami_with(
    client: &mut FlightServiceClient<Channel>,
    authorization: &str,
) -> Result<Vec<String>, Status> {
    let mut request = Request::new(Action::new("whoami", ""));
    request
        .metadata_mut()
        .insert("authorization", ascii(authorization));
    let response = within("do_action", client.do_action(request)).await?;
    let mut results = response.into_inner();
    let mut names = Vec::new();
    while let Some(result) = within("a whoami result", results.message()).await? {
        names.push(String::from_utf8(result.body.to_vec()).expect("UTF-8"));
    }
    Ok(names)
}

/// The layer hands the service the user of each call, in the request's
/// extensions: the user a bearer token was issued to, or the user who logs in
/// on the call itself. Without the layer, the service finds no user and
/// refuses `whoami` (the benchmark serves `EchoServer` so, for echo only).
#[tokio::test]
async fn the_service_learns_who_called() {
    let auth = Arc::new(authenticator(TokenPolicy::default()));
    let layered = Arc::clone(&auth);
    let server = TestServer::start(move |listener, shutdown| {
        tonic::transport::Server::builder()
            .layer(BasicAuthLayer::new(layered))
            .add_service(FlightServiceServer::new(EchoServer))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                shutdown,
            )
    })
    .await;
    let channel = server.channel().await;
    let mut client = client_on(&channel);

    let test = format!("Bearer {}", log_in(&auth, "test", "password"));
    let other = format!("Bearer {}", log_in(&auth, "other", "s3cret:with:colons"));
    for (authorization, user) in [
        (test.as_str(), "test"),
        (other.as_str(), "other"),
        (test.as_str(), "test"),
        (&basic("other", "s3cret:with:colons"), "other"),
    ] {
        let names = whoami_with(&mut client, authorization)
            .await
            .expect("whoami is answered");
        assert_eq!(names, [user], "{authorization}");
    }
    drop((client, channel));
    server.stop().await;

    let server = TestServer::start(|listener, shutdown| {
        tonic::transport::Server::builder()
            .add_service(FlightServiceServer::new(EchoServer))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                shutdown,
            )
    })
    .await;
    let channel = server.channel().await;
    let mut client = client_on(&channel);
    let status = whoami_with(&mut client, &test)
        .await
        .expect_err("no layer, no user");
    assert_status(&status, Code::Unauthenticated, "the call has no user", None);
    drop((client, channel));
    server.stop().await;
}
