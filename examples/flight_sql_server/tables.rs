//! The database's tables, table types, primary keys and foreign keys.

use std::sync::Arc;

use arrow_array::builder::Int32Builder;
use arrow_array::builder::{StringBuilder, UInt8Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_flight::sql::{
    CommandGetCrossReference, CommandGetExportedKeys, CommandGetImportedKeys,
    CommandGetPrimaryKeys, CommandGetTableTypes, CommandGetTables,
};
use arrow_flight::{FlightDescriptor, FlightInfo, Ticket};
use arrow_schema::{DataType, Field, Schema};
use rusqlite::Connection;
use tonic::{Request, Response, Status};

use super::batches::declared_type;
use super::server::SqlServer;
use super::sqlite::sql_error;
use super::statements::{DoGetStream, batch_stream, built, flight_info};

/// The primary keys' columns, and the foreign keys' (exported, imported
/// and cross references), in the fields Flight SQL prescribes.
pub(crate) fn primary_keys_schema() -> Schema {
    Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ])
}

pub(crate) fn foreign_keys_schema() -> Schema {
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    Schema::new(vec![
        text("pk_catalog_name", true),
        text("pk_db_schema_name", true),
        text("pk_table_name", false),
        text("pk_column_name", false),
        text("fk_catalog_name", true),
        text("fk_db_schema_name", true),
        text("fk_table_name", false),
        text("fk_column_name", false),
        Field::new("key_sequence", DataType::Int32, false),
        text("fk_key_name", true),
        text("pk_key_name", true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ])
}

/// The tables (and views) of the database, and each one's Arrow schema,
/// from the declared types and NOT NULL of its columns.
pub(crate) fn tables(
    connection: &Connection,
) -> Result<Vec<(String, String, Schema)>, Status> {
    let mut statement = connection
        .prepare(
            "SELECT name, type FROM sqlite_schema \
             WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' \
             ORDER BY name",
        )
        .map_err(sql_error)?;
    let names = statement
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .map_err(sql_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql_error)?;
    let mut found = Vec::new();
    for (name, kind) in names {
        let mut columns = connection
            .prepare("SELECT name, type, \"notnull\" FROM pragma_table_info(?1)")
            .map_err(sql_error)?;
        let fields = columns
            .query_map([&name], |row| {
                let declared: String = row.get(1)?;
                let data_type = declared_type(&declared).unwrap_or(DataType::Utf8);
                let not_null: bool = row.get(2)?;
                Ok(Field::new(row.get::<_, String>(0)?, data_type, !not_null))
            })
            .map_err(sql_error)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql_error)?;
        found.push((name, kind.to_uppercase(), Schema::new(fields)));
    }
    Ok(found)
}

/// One column of a foreign key: (from table, from column, to table, to
/// column, position in the key, on update, on delete).
pub(crate) type ForeignKey = (String, String, String, String, i32, String, String);

pub(crate) fn foreign_keys(
    connection: &Connection,
) -> Result<Vec<ForeignKey>, Status> {
    let mut statement = connection
        .prepare(
            "SELECT t.name, k.\"from\", k.\"table\", k.\"to\", k.seq, \
             k.on_update, k.on_delete \
             FROM sqlite_schema AS t, pragma_foreign_key_list(t.name) AS k \
             WHERE t.type = 'table' ORDER BY t.name, k.id, k.seq",
        )
        .map_err(sql_error)?;
    let keys = statement
        .query_map([], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get::<_, i32>(4)? + 1,
                row.get(5)?,
                row.get(6)?,
            ))
        })
        .map_err(sql_error)?;
    keys.collect::<Result<Vec<_>, _>>().map_err(sql_error)
}

/// Flight SQL's code of an ON UPDATE or ON DELETE rule.
pub(crate) fn rule(rule: &str) -> u8 {
    match rule {
        "CASCADE" => 0,
        "RESTRICT" => 1,
        "SET NULL" => 2,
        "NO ACTION" => 3,
        _ => 4,
    }
}

pub(crate) fn foreign_key_batch(
    keys: &[ForeignKey],
) -> Result<RecordBatch, Status> {
    let mut text: [StringBuilder; 10] = Default::default();
    let mut sequence = Int32Builder::new();
    let mut rules = [UInt8Builder::new(), UInt8Builder::new()];
    for (table, column, to_table, to_column, seq, update, delete) in keys {
        let row = [None, None, Some(to_table), Some(to_column), None, None]
            .into_iter()
            .chain([Some(table), Some(column), None, None]);
        for (builder, value) in text.iter_mut().zip(row) {
            builder.append_option(value);
        }
        sequence.append_value(*seq);
        rules[0].append_value(rule(update));
        rules[1].append_value(rule(delete));
    }
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for builder in &mut text {
        arrays.push(Arc::new(builder.finish()));
    }
    arrays.insert(8, Arc::new(sequence.finish()));
    for builder in &mut rules {
        arrays.push(Arc::new(builder.finish()));
    }
    built(RecordBatch::try_new(
        Arc::new(foreign_keys_schema()),
        arrays,
    ))
}

impl SqlServer {
    // ANCHOR: tables
    pub(crate) async fn describe_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.user(&request)?;
        let schema = query.clone().into_builder().schema();
        flight_info(&schema, query, request.into_inner())
    }

    pub(crate) async fn fetch_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let owner = self.owner(&request)?;
        let found = self
            .session(&owner, None, request.metadata())
            .await?
            .run(tables)
            .await?;
        let mut builder = query.into_builder();
        for (name, kind, schema) in found {
            builder
                .append("", "main", name, kind, &schema)
                .map_err(|_| {
                    Status::internal("the table list could not be built")
                })?;
        }
        Ok(Response::new(batch_stream(built(builder.build())?)))
    }
    // ANCHOR_END: tables

    pub(crate) async fn describe_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.user(&request)?;
        let schema = query.into_builder().schema();
        flight_info(&schema, query, request.into_inner())
    }

    pub(crate) async fn fetch_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.user(&request)?;
        let mut builder = query.into_builder();
        builder.append("TABLE");
        builder.append("VIEW");
        Ok(Response::new(batch_stream(built(builder.build())?)))
    }
}

impl SqlServer {
    pub(crate) async fn describe_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.user(&request)?;
        flight_info(&primary_keys_schema(), query, request.into_inner())
    }

    pub(crate) async fn fetch_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let owner = self.owner(&request)?;
        let table = query.table;
        let keys = self
            .session(&owner, None, request.metadata())
            .await?
            .run(move |connection| {
                let mut statement = connection
                    .prepare(
                        "SELECT name, pk FROM pragma_table_info(?1) \
                         WHERE pk > 0 ORDER BY pk",
                    )
                    .map_err(sql_error)?;
                let keys = statement
                    .query_map([&table], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, i32>(1)?))
                    })
                    .map_err(sql_error)?;
                let keys =
                    keys.collect::<Result<Vec<_>, _>>().map_err(sql_error)?;
                Ok((table, keys))
            })
            .await?;
        let (table, keys) = keys;
        let mut text: Vec<StringBuilder> =
            (0..5).map(|_| StringBuilder::new()).collect();
        let mut sequence = Int32Builder::new();
        for (column, at) in keys {
            text[0].append_null();
            text[1].append_null();
            text[2].append_value(&table);
            text[3].append_value(column);
            text[4].append_null();
            sequence.append_value(at);
        }
        let mut arrays: Vec<ArrayRef> = text
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        arrays.push(Arc::new(sequence.finish()));
        let batch = built(RecordBatch::try_new(
            Arc::new(primary_keys_schema()),
            arrays,
        ))?;
        Ok(Response::new(batch_stream(batch)))
    }
}

impl SqlServer {
    pub(crate) async fn describe_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.user(&request)?;
        flight_info(&foreign_keys_schema(), query, request.into_inner())
    }

    pub(crate) async fn fetch_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.foreign_keys_where(&request, |k| k.2 == query.table)
            .await
    }

    pub(crate) async fn describe_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.user(&request)?;
        flight_info(&foreign_keys_schema(), query, request.into_inner())
    }

    pub(crate) async fn fetch_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.foreign_keys_where(&request, |k| k.0 == query.table)
            .await
    }

    pub(crate) async fn describe_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.user(&request)?;
        flight_info(&foreign_keys_schema(), query, request.into_inner())
    }

    pub(crate) async fn fetch_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.foreign_keys_where(&request, |k| {
            k.2 == query.pk_table && k.0 == query.fk_table
        })
        .await
    }

    /// The foreign keys of the caller's database that `keep` keeps, as
    /// one batch.
    async fn foreign_keys_where(
        &self,
        request: &Request<Ticket>,
        keep: impl Fn(&ForeignKey) -> bool,
    ) -> Result<Response<DoGetStream>, Status> {
        let owner = self.owner(request)?;
        let keys = self
            .session(&owner, None, request.metadata())
            .await?
            .run(foreign_keys)
            .await?;
        let keys: Vec<_> = keys.into_iter().filter(|k| keep(k)).collect();
        Ok(Response::new(batch_stream(foreign_key_batch(&keys)?)))
    }
}
