//! Bulk ingestion: an uploaded stream of batches into a table.

use arrow_array::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{
    CommandStatementIngest, TableExistsOption, TableNotExistOption,
};
use arrow_schema::{DataType, TimeUnit};
use futures::stream::{StreamExt, TryStreamExt};
use rusqlite::Connection;
use tokio::sync::mpsc;
use tonic::{Request, Status};

use super::batches::{bind, parameter_row};
use super::server::SqlServer;
use super::sqlite::sql_error;
use super::uploads::within_limit;

/// The SQLite column type for an Arrow type of an ingested batch.
pub(crate) fn column_type(data_type: &DataType) -> String {
    match data_type {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => "INTEGER".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Date32 => "DATE".into(),
        DataType::Timestamp(unit, zone) => {
            let precision = match unit {
                TimeUnit::Second => 0,
                TimeUnit::Millisecond => 3,
                TimeUnit::Microsecond => 6,
                TimeUnit::Nanosecond => 9,
            };
            let zone = if zone.is_some() { "TZ" } else { "" };
            format!("TIMESTAMP{zone}({precision})")
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => "REAL".into(),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "BLOB".into(),
        _ => "TEXT".into(),
    }
}

pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Writes the batches that arrive on `batches` into `table`, creating,
/// appending or replacing it as `command` says, in one transaction.
pub(crate) fn ingest(
    connection: &Connection,
    command: &CommandStatementIngest,
    mut batches: mpsc::Receiver<RecordBatch>,
    in_transaction: bool,
) -> Result<i64, Status> {
    let options = command.table_definition_options.unwrap_or_default();
    let if_exists = TableExistsOption::try_from(options.if_exists);
    let if_not_exists = TableNotExistOption::try_from(options.if_not_exist);
    let table = quote(&command.table);
    let exists: bool = connection
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_schema \
             WHERE type = 'table' AND name = ?1",
            [&command.table],
            |row| row.get(0),
        )
        .map_err(sql_error)?;
    let Some(first) = batches.blocking_recv() else {
        return Err(Status::invalid_argument("no data to ingest"));
    };
    if !in_transaction {
        connection
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(sql_error)?;
    }
    let create = || {
        let columns: Vec<String> = first
            .schema()
            .fields()
            .iter()
            .map(|f| format!("{} {}", quote(f.name()), column_type(f.data_type())))
            .collect();
        let sql = format!("CREATE TABLE {table} ({})", columns.join(", "));
        connection.execute(&sql, []).map(|_| ()).map_err(sql_error)
    };
    let written = (|| {
        match (exists, if_exists, if_not_exists) {
            (true, Ok(TableExistsOption::Append), _) => {}
            (true, Ok(TableExistsOption::Replace), _) => {
                connection
                    .execute(&format!("DROP TABLE {table}"), [])
                    .map_err(sql_error)?;
                create()?;
            }
            (true, _, _) => {
                return Err(Status::already_exists(format!(
                    "the table {:?} exists: ingest with append or replace",
                    command.table
                )));
            }
            (false, _, Ok(TableNotExistOption::Create)) => create()?,
            (false, _, _) => {
                return Err(Status::not_found(format!(
                    "no table {:?}: ingest with create",
                    command.table
                )));
            }
        }
        let marks = vec!["?"; first.num_columns()].join(", ");
        let mut insert = connection
            .prepare(&format!("INSERT INTO {table} VALUES ({marks})"))
            .map_err(sql_error)?;
        let mut rows = 0;
        let mut batch = Some(first.clone());
        while let Some(current) = batch {
            for row in 0..current.num_rows() {
                bind(&mut insert, &parameter_row(&current, row)?)?;
                insert.raw_execute().map_err(sql_error)?;
                rows += 1;
            }
            batch = batches.blocking_recv();
        }
        Ok(rows)
    })();
    if !in_transaction {
        let end = if written.is_ok() {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        connection.execute_batch(end).map_err(sql_error)?;
    }
    written
}

impl SqlServer {
    // ANCHOR: ingest_upload
    pub(crate) async fn ingest_upload(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let owner = self.owner(&request)?;
        if command.temporary
            || command.catalog.is_some()
            || command.schema.is_some()
        {
            return Err(Status::invalid_argument(
                "ingest into a table of the database: no catalog, schema or \
                 temporary table",
            ));
        }
        let transaction = command.transaction_id.clone();
        let session = self
            .session(&owner, transaction.as_deref(), request.metadata())
            .await?;
        let (sender, receiver) = mpsc::channel(2);
        let writer = session.run(move |connection| {
            ingest(connection, &command, receiver, transaction.is_some())
        });
        let reader = async move {
            let stream =
                within_limit(request.into_inner()).map_err(FlightError::from);
            let mut batches = FlightRecordBatchStream::new_from_flight_data(stream);
            while let Some(batch) = batches.next().await {
                let batch = batch.map_err(|e| match e {
                    FlightError::Tonic(status) => *status,
                    e => Status::invalid_argument(format!(
                        "the data do not decode: {e}"
                    )),
                })?;
                if sender.send(batch).await.is_err() {
                    break;
                }
            }
            Ok::<(), Status>(())
        };
        let (written, read) = tokio::join!(writer, reader);
        read?;
        written
    }
    // ANCHOR_END: ingest_upload
}
