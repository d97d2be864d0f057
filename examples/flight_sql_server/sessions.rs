//! Session options, closing a session, and cancelling a query.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::{ActionCancelQueryRequest, ActionCancelQueryResult};
use arrow_flight::{CancelFlightInfoRequest, CancelFlightInfoResult, FlightInfo};
use futures::stream;
use prost::Message;
use tonic::{Request, Response, Status};

use super::server::{SqlServer, lock};

/// Flight's session messages (Flight.proto), which arrow-flight 60 has no
/// types for: a value of a session option, and the bodies of the
/// SetSessionOptions, GetSessionOptions and CloseSession actions.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionOptionValue {
    #[prost(oneof = "OptionValue", tags = "1, 2, 3, 4, 5")]
    pub value: Option<OptionValue>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum OptionValue {
    #[prost(string, tag = "1")]
    String(String),
    #[prost(bool, tag = "2")]
    Bool(bool),
    #[prost(sfixed64, tag = "3")]
    Int64(i64),
    #[prost(double, tag = "4")]
    Double(f64),
    #[prost(message, tag = "5")]
    Strings(StringList),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StringList {
    #[prost(string, repeated, tag = "1")]
    pub values: Vec<String>,
}

/// `SetSessionOptionsRequest` and `GetSessionOptionsResult` alike.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionOptions {
    #[prost(map = "string, message", tag = "1")]
    pub options: HashMap<String, SessionOptionValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SetSessionOptionsResult {
    #[prost(map = "string, message", tag = "1")]
    pub errors: HashMap<String, SetSessionOptionError>,
}

/// 1: an unknown option, 2: a value the option cannot take.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SetSessionOptionError {
    #[prost(int32, tag = "1")]
    pub value: i32,
}

/// 1: closed.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CloseSessionResult {
    #[prost(int32, tag = "1")]
    pub status: i32,
}

/// The options of every session: the database has no catalog and one
/// schema, `main`, so these are all the values they can take.
pub(crate) fn session_options() -> HashMap<String, SessionOptionValue> {
    let text = |value: &str| SessionOptionValue {
        value: Some(OptionValue::String(value.to_string())),
    };
    HashMap::from([
        ("catalog".to_string(), text("")),
        ("schema".to_string(), text("main")),
    ])
}

pub(crate) fn action_result(
    message: impl Message,
) -> <SqlServer as FlightService>::DoActionStream {
    let result = arrow_flight::Result {
        body: message.encode_to_vec().into(),
    };
    Box::pin(stream::iter([Ok(result)]))
}

/// A running query that a client may cancel: its owner, the ticket it
/// serves, and the flag that stops it.
pub(crate) struct Running {
    pub(crate) owner: String,
    pub(crate) ticket: Vec<u8>,
    pub(crate) cancelled: Arc<AtomicBool>,
}

pub(crate) type RunningQueries = Arc<Mutex<HashMap<u64, Running>>>;

impl SqlServer {
    // ANCHOR: cancel
    /// Cancels the queries of `owner` that serve a ticket of `info`: 1 when
    /// one was running (cancelled), 3 when none was (not cancellable).
    pub(crate) fn cancel(&self, owner: &str, info: &FlightInfo) -> u8 {
        let tickets: Vec<&[u8]> = info
            .endpoint
            .iter()
            .filter_map(|e| e.ticket.as_ref().map(|t| &t.ticket[..]))
            .collect();
        let mut found = false;
        for query in lock(&self.running).values() {
            if query.owner == owner && tickets.contains(&&query.ticket[..]) {
                query.cancelled.store(true, Ordering::Relaxed);
                found = true;
            }
        }
        if found { 1 } else { 3 }
    }
    // ANCHOR_END: cancel
}

impl SqlServer {
    pub(crate) async fn cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        let owner = self.owner(&request)?;
        let info = FlightInfo::decode(query.info).map_err(|_| {
            Status::invalid_argument("the FlightInfo does not decode")
        })?;
        Ok(ActionCancelQueryResult {
            result: self.cancel(&owner, &info) as i32,
        })
    }

    // ANCHOR: other_action
    pub(crate) async fn other_action(
        &self,
        request: Request<arrow_flight::Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        let owner = self.owner(&request)?;
        let action = request.into_inner();
        let bad = |what: &str| {
            Status::invalid_argument(format!("{what} does not decode"))
        };
        let answer = match action.r#type.as_str() {
            "CancelFlightInfo" => {
                let cancel = CancelFlightInfoRequest::decode(action.body)
                    .map_err(|_| bad("the CancelFlightInfoRequest"))?;
                let info = cancel.info.unwrap_or_default();
                let status = self.cancel(&owner, &info) as i32;
                action_result(CancelFlightInfoResult { status })
            }
            "SetSessionOptions" => {
                let wanted = SessionOptions::decode(action.body)
                    .map_err(|_| bad("the SetSessionOptionsRequest"))?;
                let known = session_options();
                let mut errors = HashMap::new();
                for (name, value) in wanted.options {
                    let error = match known.get(&name) {
                        None => 1,
                        Some(only) if only != &value => 2,
                        Some(_) => continue,
                    };
                    errors.insert(name, SetSessionOptionError { value: error });
                }
                action_result(SetSessionOptionsResult { errors })
            }
            "GetSessionOptions" => action_result(SessionOptions {
                options: session_options(),
            }),
            "CloseSession" => {
                lock(&self.prepared).retain(|_, p| p.owner != owner);
                lock(&self.transactions).retain(|_, t| t.owner != owner);
                lock(&self.waiting).retain(|_, w| w.owner != owner);
                action_result(CloseSessionResult { status: 1 })
            }
            other => {
                return Err(Status::unimplemented(format!(
                    "this server has no action {:?}",
                    other.chars().take(64).collect::<String>()
                )));
            }
        };
        Ok(Response::new(answer))
    }
    // ANCHOR_END: other_action
}
