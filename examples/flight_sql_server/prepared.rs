//! Prepared statements: create, bind parameters, query, update, close.

use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, DoPutPreparedStatementResult,
};
use arrow_flight::{FlightDescriptor, FlightInfo, Ticket};
use arrow_schema::{DataType, Field, Schema};
use rusqlite::types::Value;
use tonic::{Request, Response, Status};

use super::batches::{result_schema, run_update};
use super::server::{
    MAX_PREPARED, Prepared, SqlServer, handle, lock, read_parameters,
};
use super::sqlite::sql_error;
use super::statements::{
    DoGetStream, flight_info, query_schema, schema_bytes, stream_query, write_now,
    written,
};

// ANCHOR: sql_prepare
impl SqlServer {
    pub(crate) async fn create_prepared(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let owner = self.owner(&request)?;
        let session = self
            .session(&owner, query.transaction_id.as_deref())
            .await?;
        let sql = query.query.clone();
        let (dataset, parameters) = session
            .run(move |connection| {
                let mut statement = connection.prepare(&sql).map_err(sql_error)?;
                let count = statement.parameter_count();
                let values = vec![Value::Null; count];
                let dataset = result_schema(&mut statement, &values)?;
                let fields: Vec<Field> = (1..=count)
                    .map(|at| {
                        let name = statement.parameter_name(at).map(String::from);
                        let name = name.unwrap_or_else(|| format!("${at}"));
                        Field::new(name, DataType::Null, true)
                    })
                    .collect();
                Ok((dataset, Schema::new(fields)))
            })
            .await?;
        let id = handle();
        let mut prepared = lock(&self.prepared);
        if prepared.len() >= MAX_PREPARED {
            return Err(Status::resource_exhausted(format!(
                "{MAX_PREPARED} prepared statements are open: close some first"
            )));
        }
        prepared.insert(
            id.clone(),
            Prepared {
                owner,
                sql: query.query,
                transaction: query.transaction_id.map(|t| t.to_vec()),
                parameters: None,
            },
        );
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: id.into(),
            dataset_schema: schema_bytes(&dataset)?,
            parameter_schema: schema_bytes(&parameters)?,
        })
    }

    pub(crate) async fn close_prepared(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        let owner = self.owner(&request)?;
        self.prepared(&owner, &query.prepared_statement_handle)?;
        lock(&self.prepared).remove(&query.prepared_statement_handle[..]);
        Ok(())
    }
}
// ANCHOR_END: sql_prepare

// ANCHOR: sql_prepared
impl SqlServer {
    pub(crate) async fn bind_prepared(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let owner = self.owner(&request)?;
        let handle = query.prepared_statement_handle;
        self.prepared(&owner, &handle)?;
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
        let session = self.session(&owner, transaction.as_deref()).await?;
        if write_now(session, &sql, parameters.clone()).await? {
            return written(request.into_inner());
        }
        let session = self.session(&owner, transaction.as_deref()).await?;
        let schema = query_schema(session, sql, parameters).await?;
        flight_info(&schema, query, request.into_inner())
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
        let session = self.session(&owner, transaction.as_deref()).await?;
        let ticket = request.get_ref().ticket.to_vec();
        let running = self.running.clone();
        let stream =
            stream_query(running, owner, ticket, session, (sql, parameters));
        Ok(Response::new(stream))
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
        let session = self.session(&owner, transaction.as_deref()).await?;
        let parameters = read_parameters(request).await?.or(bound);
        session
            .run(move |connection| {
                run_update(connection, &sql, parameters.as_ref())
            })
            .await
    }
}
// ANCHOR_END: sql_prepared
