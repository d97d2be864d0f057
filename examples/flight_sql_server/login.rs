//! Logging in: the Handshake checks a user's password and hands out a
//! bearer token, which every later call carries.

use std::collections::{HashMap, VecDeque};

use arrow_flight::{HandshakeRequest, HandshakeResponse};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use futures::stream;
use subtle::ConstantTimeEq;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status, Streaming};

use super::server::SqlServer;
use super::statements::HandshakeStream;

/// The most tokens kept at once; when full, the oldest is forgotten.
pub const MAX_TOKENS: usize = 10_000;

/// The longest `authorization` header the server reads.
pub const MAX_AUTHORIZATION_LEN: usize = 4096;

#[derive(Default)]
pub(crate) struct Tokens {
    pub(crate) users: HashMap<String, String>,
    pub(crate) by_age: VecDeque<String>,
}

pub(crate) fn authorization(metadata: &MetadataMap) -> Result<&str, Status> {
    let Some(value) = metadata.get("authorization") else {
        return Err(Status::unauthenticated("No credentials supplied"));
    };
    if value.len() > MAX_AUTHORIZATION_LEN {
        return Err(Status::invalid_argument(format!(
            "authorization header is {} bytes long, \
             the limit is {MAX_AUTHORIZATION_LEN}",
            value.len()
        )));
    }
    value.to_str().map_err(|_| {
        Status::invalid_argument("authorization header is not printable ASCII")
    })
}

impl SqlServer {
    // ANCHOR: log_in
    /// Checks `Basic <base64 of user:password>` and returns the user and a
    /// new token.
    pub(crate) fn log_in(
        &self,
        metadata: &MetadataMap,
    ) -> Result<(String, String), Status> {
        let Some(credentials) = authorization(metadata)?.strip_prefix("Basic ")
        else {
            return Err(Status::invalid_argument(
                "a Handshake needs \"Basic <credentials>\" \
                 in its authorization header",
            ));
        };
        let decoded = STANDARD_NO_PAD
            .decode(credentials.trim_end_matches('='))
            .ok();
        let decoded = decoded.and_then(|bytes| String::from_utf8(bytes).ok());
        let Some((user, password)) =
            decoded.as_ref().and_then(|d| d.split_once(':'))
        else {
            return Err(Status::invalid_argument(
                "Basic credentials must be user:password in base64",
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
        let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if tokens.by_age.len() >= MAX_TOKENS {
            let oldest = tokens.by_age.pop_front().unwrap_or_default();
            tokens.users.remove(&oldest);
        }
        tokens.users.insert(token.clone(), user.to_string());
        tokens.by_age.push_back(token.clone());
        Ok((user.to_string(), token))
    }
    // ANCHOR_END: log_in
}

impl SqlServer {
    // ANCHOR: bearer
    /// Checks `Bearer <token>` and returns the token: a login is a session,
    /// which owns its prepared statements and transactions.
    pub(crate) fn owner<T>(&self, request: &Request<T>) -> Result<String, Status> {
        self.user(request)?;
        let token =
            authorization(request.metadata())?.trim_start_matches("Bearer ");
        Ok(token.to_string())
    }

    /// Checks `Bearer <token>` and returns the user the token was issued to.
    pub(crate) fn user<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let Some(token) =
            authorization(request.metadata())?.strip_prefix("Bearer ")
        else {
            return Err(Status::unauthenticated(
                "call with \"Bearer <token>\", the token the Handshake returned",
            ));
        };
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        match tokens.users.get(token) {
            Some(user) => Ok(user.clone()),
            None => Err(Status::unauthenticated("Invalid token")),
        }
    }
    // ANCHOR_END: bearer
}

impl SqlServer {
    // ANCHOR: handshake
    pub(crate) async fn answer_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<HandshakeStream>, Status> {
        let (user, token) = self.log_in(request.metadata())?;
        let bearer =
            MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| {
                Status::internal("the new token is not a valid header value")
            })?;
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: user.into(),
        };
        let replies: HandshakeStream = Box::pin(stream::iter([Ok(reply)]));
        let mut response = Response::new(replies);
        response.metadata_mut().insert("authorization", bearer);
        Ok(response)
    }
    // ANCHOR_END: handshake
}
