//! Prepared statements: create, bind parameters, query, update, close.

use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt,
};
use arrow_flight::{FlightDescriptor, FlightInfo, Ticket};
use arrow_schema::{DataType, Field, Schema};
use std::time::Instant;

use prost::Message;
use tonic::{Request, Response, Status};

use super::batches::{declared_types, result_schema, run_update};
use super::server::{
    MAX_PREPARED, PREPARE_LOOK, Prepared, SqlServer, handle, lock, read_parameters,
};
use super::sqlite::sql_error;
use super::statements::{
    DoGetStream, Job, flight_info, schema_bytes, stream_query, written,
};

impl SqlServer {
    // ANCHOR: prepare
    pub(crate) async fn create_prepared(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let owner = self.owner(&request)?;
        let transaction = query.transaction_id.as_deref().map(<[u8]>::to_vec);
        let session = self
            .session(&owner, transaction.as_deref(), request.metadata())
            .await?;
        let sql = query.query.clone();
        let (declared, parameters, run) = session
            .run(move |connection| {
                let statement = connection.prepare(&sql).map_err(sql_error)?;
                let count = statement.parameter_count();
                let fields: Vec<Field> = (1..=count)
                    .map(|at| {
                        let name = statement.parameter_name(at).map(String::from);
                        let name = name.unwrap_or_else(|| format!("${at}"));
                        Field::new(name, DataType::Null, true)
                    })
                    .collect();
                let declared = declared_types(&statement);
                let undeclared = declared.iter().any(|(_, t)| t.is_none());
                let run = count == 0 && statement.readonly() && undeclared;
                Ok((declared, Schema::new(fields), run))
            })
            .await?;
        let full = || {
            Status::resource_exhausted(format!(
                "{MAX_PREPARED} prepared statements are open: close some first"
            ))
        };
        if lock(&self.prepared).len() >= MAX_PREPARED {
            return Err(full());
        }
        let id = handle();
        // ANCHOR_END: prepare
        // ANCHOR: prepare_schema
        // The schema: the declared types; where the values decide, the
        // query starts, and if its first row comes within PREPARE_LOOK its
        // result waits for the statement's DoGet; else those columns are
        // said to be text, and the FlightInfo tells their types.
        let mut dataset = result_schema(&declared, None)?;
        if run {
            let ticket = CommandPreparedStatementQuery {
                prepared_statement_handle: id.clone().into(),
            };
            let mut session = self
                .session(&owner, transaction.as_deref(), request.metadata())
                .await?;
            session.deadline = session.deadline.min(Instant::now() + PREPARE_LOOK);
            let job = Job {
                owner: owner.clone(),
                ticket: ticket.as_any().encode_to_vec(),
                transaction: transaction.clone(),
                sql: query.query.clone(),
                parameters: None,
                write: false,
            };
            if let Ok(Some(schema)) = self.start_query(job, session).await {
                dataset = schema;
            }
        }
        let mut prepared = lock(&self.prepared);
        if prepared.len() >= MAX_PREPARED {
            return Err(full());
        }
        prepared.insert(
            id.clone(),
            Prepared {
                owner,
                sql: query.query,
                transaction,
                parameters: None,
            },
        );
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: id.into(),
            dataset_schema: schema_bytes(&dataset)?,
            parameter_schema: schema_bytes(&parameters)?,
        })
    }
    // ANCHOR_END: prepare_schema

    pub(crate) async fn close_prepared(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        let owner = self.owner(&request)?;
        self.prepared(&owner, &query.prepared_statement_handle)?;
        lock(&self.prepared).remove(&query.prepared_statement_handle[..]);
        let ticket = CommandPreparedStatementQuery {
            prepared_statement_handle: query.prepared_statement_handle,
        };
        lock(&self.waiting).remove(&ticket.as_any().encode_to_vec());
        Ok(())
    }
}

impl SqlServer {
    // ANCHOR: bind
    pub(crate) async fn bind_prepared(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let owner = self.owner(&request)?;
        let handle = query.prepared_statement_handle;
        self.prepared(&owner, &handle)?;
        let ticket = CommandPreparedStatementQuery {
            prepared_statement_handle: handle.clone(),
        };
        lock(&self.waiting).remove(&ticket.as_any().encode_to_vec());
        let parameters = read_parameters(request).await?;
        match lock(&self.prepared).get_mut(&handle[..]) {
            Some(prepared) => prepared.parameters = parameters,
            None => {
                return Err(Status::not_found("the prepared statement was closed"));
            }
        }
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle),
        })
    }
    // ANCHOR_END: bind

    pub(crate) async fn describe_prepared(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let owner = self.owner(&request)?;
        let Prepared {
            sql,
            parameters,
            transaction,
            ..
        } = self.prepared(&owner, &query.prepared_statement_handle)?;
        let ticket = query.as_any().encode_to_vec();
        let waiting = match parameters {
            None => self.waiting_schema(&owner, &ticket),
            Some(_) => None,
        };
        if let Some(schema) = waiting {
            return flight_info(&schema, query, request.into_inner());
        }
        let session = self
            .session(&owner, transaction.as_deref(), request.metadata())
            .await?;
        let job = Job {
            owner,
            ticket,
            transaction,
            sql,
            parameters,
            write: true,
        };
        match self.start_query(job, session).await? {
            Some(schema) => flight_info(&schema, query, request.into_inner()),
            None => written(request.into_inner()),
        }
    }

    pub(crate) async fn fetch_prepared(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let owner = self.owner(&request)?;
        let Prepared {
            sql,
            parameters,
            transaction,
            ..
        } = self.prepared(&owner, &query.prepared_statement_handle)?;
        let ticket = request.get_ref().ticket.to_vec();
        if let Some(stream) = self.fetch_waiting(&owner, &ticket) {
            return Ok(Response::new(stream));
        }
        let session = self
            .session(&owner, transaction.as_deref(), request.metadata())
            .await?;
        let job = Job {
            owner,
            ticket,
            transaction,
            sql,
            parameters,
            write: true,
        };
        Ok(Response::new(stream_query(
            self.running.clone(),
            job,
            session,
        )))
    }

    pub(crate) async fn execute_prepared_update(
        &self,
        query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let owner = self.owner(&request)?;
        let Prepared {
            sql,
            parameters: bound,
            transaction,
            ..
        } = self.prepared(&owner, &query.prepared_statement_handle)?;
        let session = self
            .session(&owner, transaction.as_deref(), request.metadata())
            .await?;
        let parameters = read_parameters(request).await?.or(bound);
        session
            .run(move |connection| {
                run_update(connection, &sql, parameters.as_ref())
            })
            .await
    }
}
