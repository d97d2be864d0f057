//! SQLite's values as Arrow arrays: types, columns, bound parameters, and
//! running a statement a batch at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow_array::builder::{
    BinaryBuilder, Float64Builder, Int64Builder, StringBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchOptions, UnionArray};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, Statement};
use tokio::sync::mpsc;
use tonic::Status;

use super::sqlite::sql_error;

// ANCHOR: types
/// The Arrow type of a declared SQLite column type, by SQLite's own rules
/// for a column's affinity; `None` where the values decide (no declared
/// type, or NUMERIC affinity).
pub fn declared_type(declared: &str) -> Option<DataType> {
    let declared = declared.trim().to_ascii_uppercase();
    if let Some(timestamp) = timestamp_type(&declared) {
        Some(timestamp)
    } else if declared == "DATE" {
        Some(DataType::Date32)
    } else if declared.starts_with("BOOL") {
        Some(DataType::Boolean)
    } else if declared.contains("INT") {
        Some(DataType::Int64)
    } else if ["CHAR", "CLOB", "TEXT"]
        .iter()
        .any(|t| declared.contains(t))
    {
        Some(DataType::Utf8)
    } else if declared.contains("BLOB") {
        Some(DataType::Binary)
    } else if ["REAL", "FLOA", "DOUB"]
        .iter()
        .any(|t| declared.contains(t))
    {
        Some(DataType::Float64)
    } else {
        None
    }
}

/// The Arrow type of a value, for a column without a declared type.
pub(crate) fn value_type(value: ValueRef<'_>) -> DataType {
    match value {
        ValueRef::Integer(_) => DataType::Int64,
        ValueRef::Real(_) => DataType::Float64,
        ValueRef::Blob(_) => DataType::Binary,
        ValueRef::Text(_) | ValueRef::Null => DataType::Utf8,
    }
}
// ANCHOR_END: types

/// `TIMESTAMP(p)`, and `TIMESTAMPTZ(p)` (its values in UTC), the column
/// types of ingested timestamps: p is 0, 3, 6 (the default) or 9.
pub(crate) fn timestamp_type(declared: &str) -> Option<DataType> {
    let rest = declared.strip_prefix("TIMESTAMP")?;
    let (zone, rest) = match rest.strip_prefix("TZ") {
        Some(rest) => (Some("UTC".into()), rest),
        None => (None, rest),
    };
    let precision = match rest.trim() {
        "" => "6",
        p => p.strip_prefix('(')?.strip_suffix(')')?.trim(),
    };
    let unit = match precision {
        "0" => TimeUnit::Second,
        "3" => TimeUnit::Millisecond,
        "6" => TimeUnit::Microsecond,
        "9" => TimeUnit::Nanosecond,
        _ => return None,
    };
    Some(DataType::Timestamp(unit, zone))
}

/// The most rows and bytes (roughly) in one batch of a result.
pub const BATCH_ROWS: usize = 8192;
pub const BATCH_BYTES: usize = 1 << 20;

pub(crate) enum Column {
    Integers(Int64Builder),
    Reals(Float64Builder),
    Texts(StringBuilder),
    Blobs(BinaryBuilder),
    /// Booleans (stored as integers), dates and timestamps (as text), cast
    /// to their Arrow type when the batch is built.
    Cast(Box<Column>, DataType),
}

impl Column {
    pub(crate) fn new(data_type: &DataType) -> Column {
        match data_type {
            DataType::Int64 => Column::Integers(Int64Builder::new()),
            DataType::Float64 => Column::Reals(Float64Builder::new()),
            DataType::Binary => Column::Blobs(BinaryBuilder::new()),
            DataType::Boolean => Column::Cast(
                Box::new(Column::Integers(Int64Builder::new())),
                DataType::Boolean,
            ),
            DataType::Date32 | DataType::Timestamp(..) => Column::Cast(
                Box::new(Column::Texts(StringBuilder::new())),
                data_type.clone(),
            ),
            _ => Column::Texts(StringBuilder::new()),
        }
    }

    /// Appends `value`, converted where SQLite's dynamic typing put a value
    /// of another type in the column; returns about how many bytes it took.
    pub(crate) fn append(
        &mut self,
        value: ValueRef<'_>,
        name: &str,
    ) -> Result<usize, Status> {
        let mismatch = |wanted: &str| {
            Status::invalid_argument(format!(
                "column {name:?} holds a {} value where {wanted} was expected",
                value.data_type()
            ))
        };
        match (self, value) {
            (Column::Cast(column, _), value) => return column.append(value, name),
            (Column::Integers(b), ValueRef::Null) => b.append_null(),
            (Column::Reals(b), ValueRef::Null) => b.append_null(),
            (Column::Texts(b), ValueRef::Null) => b.append_null(),
            (Column::Blobs(b), ValueRef::Null) => b.append_null(),
            (Column::Integers(b), ValueRef::Integer(i)) => b.append_value(i),
            (Column::Integers(_), _) => return Err(mismatch("INTEGER")),
            (Column::Reals(b), ValueRef::Real(f)) => b.append_value(f),
            (Column::Reals(b), ValueRef::Integer(i)) => b.append_value(i as f64),
            (Column::Reals(_), _) => return Err(mismatch("REAL")),
            (Column::Texts(b), ValueRef::Text(t)) => {
                b.append_value(String::from_utf8_lossy(t));
                return Ok(t.len() + 4);
            }
            (Column::Texts(b), ValueRef::Integer(i)) => {
                b.append_value(i.to_string())
            }
            (Column::Texts(b), ValueRef::Real(f)) => b.append_value(f.to_string()),
            (Column::Texts(_), ValueRef::Blob(_)) => return Err(mismatch("TEXT")),
            (Column::Blobs(b), ValueRef::Blob(bytes) | ValueRef::Text(bytes)) => {
                b.append_value(bytes);
                return Ok(bytes.len() + 4);
            }
            (Column::Blobs(_), _) => return Err(mismatch("BLOB")),
        }
        Ok(8)
    }

    pub(crate) fn finish(&mut self, name: &str) -> Result<ArrayRef, Status> {
        let array: ArrayRef = match self {
            Column::Integers(b) => Arc::new(b.finish()),
            Column::Reals(b) => Arc::new(b.finish()),
            Column::Texts(b) => Arc::new(b.finish()),
            Column::Blobs(b) => Arc::new(b.finish()),
            Column::Cast(column, to) => {
                let values = column.finish(name)?;
                return cast_column(&values, to).map_err(|e| {
                    Status::invalid_argument(format!(
                        "column {name:?} holds a value that is not a {to}: {e}"
                    ))
                });
            }
        };
        Ok(array)
    }
}

/// `values` as `to`: a timestamp with a time zone is read as UTC.
pub(crate) fn cast_column(
    values: &ArrayRef,
    to: &DataType,
) -> Result<ArrayRef, arrow_schema::ArrowError> {
    let strict = arrow_cast::CastOptions {
        safe: false,
        ..Default::default()
    };
    match to {
        DataType::Timestamp(unit, Some(_)) => {
            let local = DataType::Timestamp(*unit, None);
            let utc = arrow_cast::cast_with_options(values, &local, &strict)?;
            retype(&utc, to)
        }
        _ => arrow_cast::cast_with_options(values, to, &strict),
    }
}

/// The same values with another type of the same layout (a timestamp with
/// or without its time zone).
pub(crate) fn retype(
    values: &ArrayRef,
    to: &DataType,
) -> Result<ArrayRef, arrow_schema::ArrowError> {
    let data = values
        .to_data()
        .into_builder()
        .data_type(to.clone())
        .build()?;
    Ok(arrow_array::make_array(data))
}

/// One Arrow value as a SQLite value: integers and booleans as INTEGER,
/// floats as REAL, binary as BLOB, a union's value as its member's (a client
/// that binds values of any type sends a union), anything else as its text.
pub(crate) fn sql_value(
    column: &dyn Array,
    row: usize,
    name: &str,
) -> Result<Value, Status> {
    let refused = |what: String| {
        Status::invalid_argument(format!("parameter {name:?} in row {row}: {what}"))
    };
    if let Some(union) = column.as_any().downcast_ref::<UnionArray>() {
        return sql_value(union.value(row).as_ref(), 0, name);
    }
    let null = column.logical_nulls().is_some_and(|n| n.is_null(row));
    if null || column.data_type() == &DataType::Null {
        return Ok(Value::Null);
    }
    let one = column.slice(row, 1);
    let cast = |to: &DataType| {
        arrow_cast::cast(&one, to).map_err(|e| refused(e.to_string()))
    };
    let data_type = column.data_type();
    let value = if data_type.is_integer() || data_type == &DataType::Boolean {
        let integer = cast(&DataType::Int64)?;
        let integer = integer.as_primitive::<Int64Type>();
        if integer.is_null(0) {
            return Err(refused("does not fit in SQLite's 64-bit integer".into()));
        }
        Value::Integer(integer.value(0))
    } else if data_type.is_floating() {
        Value::Real(
            cast(&DataType::Float64)?
                .as_primitive::<Float64Type>()
                .value(0),
        )
    } else if let DataType::Binary
    | DataType::LargeBinary
    | DataType::BinaryView
    | DataType::FixedSizeBinary(_) = data_type
    {
        Value::Blob(
            cast(&DataType::Binary)?
                .as_binary::<i32>()
                .value(0)
                .to_vec(),
        )
    } else if let DataType::Timestamp(unit, Some(_)) = data_type {
        let utc = retype(&one, &DataType::Timestamp(*unit, None))
            .map_err(|e| refused(e.to_string()))?;
        let text = ArrayFormatter::try_new(utc.as_ref(), &FormatOptions::default())
            .map_err(|e| refused(e.to_string()))?;
        Value::Text(format!("{}Z", text.value(0)))
    } else {
        let text = ArrayFormatter::try_new(column, &FormatOptions::default())
            .map_err(|_| {
                refused(format!("this server cannot bind a {data_type}"))
            })?;
        Value::Text(text.value(row).to_string())
    };
    Ok(value)
}

/// The values of row `row` of `parameters`, one per column.
pub(crate) fn parameter_row(
    parameters: &RecordBatch,
    row: usize,
) -> Result<Vec<Value>, Status> {
    let schema = parameters.schema();
    let columns = parameters.columns().iter().zip(schema.fields());
    columns
        .map(|(column, field)| sql_value(column.as_ref(), row, field.name()))
        .collect()
}

/// Binds one row of parameters to `statement`, by position.
pub(crate) fn bind(
    statement: &mut Statement<'_>,
    values: &[Value],
) -> Result<(), Status> {
    let wanted = statement.parameter_count();
    if values.len() != wanted {
        return Err(Status::invalid_argument(format!(
            "the statement has {wanted} parameter(s), {} were bound",
            values.len()
        )));
    }
    for (at, value) in values.iter().enumerate() {
        statement
            .raw_bind_parameter(at + 1, value)
            .map_err(sql_error)?;
    }
    Ok(())
}

/// The declared Arrow types of a statement's columns; `None` where the
/// values decide.
pub(crate) fn declared_types(
    statement: &Statement<'_>,
) -> Vec<(String, Option<DataType>)> {
    statement
        .columns()
        .map(|c| (c.name().to_string(), c.decl_type().and_then(declared_type)))
        .collect()
}

/// The schema of a result: the declared types of its columns, and for the
/// others the type of the value in the first row (text without one).
pub(crate) fn result_schema(
    columns: &[(String, Option<DataType>)],
    first: Option<&rusqlite::Row<'_>>,
) -> Result<SchemaRef, Status> {
    let mut fields = Vec::new();
    for (at, (name, declared)) in columns.iter().enumerate() {
        let data_type = match (declared, first) {
            (Some(declared), _) => declared.clone(),
            (None, Some(row)) => value_type(row.get_ref(at).map_err(sql_error)?),
            (None, None) => DataType::Utf8,
        };
        fields.push(Field::new(name, data_type, true));
    }
    Ok(Arc::new(Schema::new(fields)))
}

pub(crate) type Batches = mpsc::Sender<Result<RecordBatch, Status>>;

/// What a query's first step tells: its result's schema, or that the
/// statement wrote (it ran to its end).
pub(crate) type Started = tokio::sync::oneshot::Sender<Option<SchemaRef>>;

/// Runs `sql` once per row of `parameters` (once without), sending the
/// result to `out` in batches of at most [`BATCH_ROWS`] rows and about
/// [`BATCH_BYTES`] bytes, and its schema to `started` as soon as the first
/// row tells it; stops when the client stops reading. A statement that
/// writes runs as an update when `write` says so, else not at all.
pub(crate) fn run_query(
    connection: &Connection,
    (sql, parameters): (&str, Option<&RecordBatch>),
    out: &Batches,
    started: Started,
    (write, cancelled): (bool, &AtomicBool),
) -> Result<(), Status> {
    let mut statement = connection.prepare(sql).map_err(sql_error)?;
    if parameters.is_none() && statement.parameter_count() > 0 {
        return Err(Status::invalid_argument(
            "the statement has parameters: prepare it and bind them",
        ));
    }
    if !statement.readonly() {
        if statement.column_count() > 0 {
            return Err(Status::invalid_argument(
                "a statement that writes and returns rows (RETURNING) is \
                 not served as a query: run it as an update",
            ));
        }
        drop(statement);
        if write {
            run_update(connection, sql, parameters)?;
            let empty = RecordBatch::new_empty(Arc::new(Schema::empty()));
            let _ = out.blocking_send(Ok(empty));
        }
        let _ = started.send(None);
        return Ok(());
    }
    let declared = declared_types(&statement);
    let names: Vec<String> = declared.iter().map(|(n, _)| n.clone()).collect();
    let runs = parameters.map_or(1, RecordBatch::num_rows);
    let mut started = Some(started);
    let mut schema = None;
    let mut columns = Vec::new();
    let mut sent_any = false;
    for index in 0..runs {
        let values = match parameters {
            Some(p) => parameter_row(p, index)?,
            None => Vec::new(),
        };
        bind(&mut statement, &values)?;
        // ANCHOR: batches
        let (mut rows_in_batch, mut bytes_in_batch) = (0, 0);
        let mut rows = statement.raw_query();
        loop {
            if cancelled.load(Ordering::Relaxed) {
                return Err(Status::cancelled("the query was cancelled"));
            }
            let row = rows.next().map_err(sql_error)?;
            let schema = match &schema {
                Some(schema) => Arc::clone(schema),
                None => {
                    let first = result_schema(&declared, row)?;
                    columns = first
                        .fields()
                        .iter()
                        .map(|f| Column::new(f.data_type()))
                        .collect();
                    schema = Some(first.clone());
                    first
                }
            };
            if let Some(started) = started.take() {
                let _ = started.send(Some(schema.clone()));
            }
            if let Some(row) = row {
                for (at, column) in columns.iter_mut().enumerate() {
                    let value = row.get_ref(at).map_err(sql_error)?;
                    bytes_in_batch += column.append(value, &names[at])?;
                }
                rows_in_batch += 1;
            }
            let full = rows_in_batch >= BATCH_ROWS || bytes_in_batch >= BATCH_BYTES;
            let last = row.is_none();
            if full || (last && (rows_in_batch > 0 || !sent_any)) {
                let arrays = columns
                    .iter_mut()
                    .zip(&names)
                    .map(|(column, name)| column.finish(name))
                    .collect::<Result<_, _>>()?;
                let rows =
                    RecordBatchOptions::new().with_row_count(Some(rows_in_batch));
                let batch =
                    RecordBatch::try_new_with_options(schema, arrays, &rows)
                        .map_err(|_| {
                            Status::internal("a batch could not be built")
                        })?;
                if out.blocking_send(Ok(batch)).is_err() {
                    return Ok(());
                }
                sent_any = true;
                (rows_in_batch, bytes_in_batch) = (0, 0);
            }
            if last {
                break;
            }
        }
        // ANCHOR_END: batches
    }
    if !sent_any {
        let schema = result_schema(&declared, None)?;
        if let Some(started) = started.take() {
            let _ = started.send(Some(schema.clone()));
        }
        let _ = out.blocking_send(Ok(RecordBatch::new_empty(schema)));
    }
    Ok(())
}

/// Runs `sql` once per row of `parameters` (once without), in one
/// transaction, and returns the number of rows it changed.
pub(crate) fn run_update(
    connection: &Connection,
    sql: &str,
    parameters: Option<&RecordBatch>,
) -> Result<i64, Status> {
    let mut statement = connection.prepare(sql).map_err(sql_error)?;
    let mut changed = 0;
    match parameters {
        None => {
            bind(&mut statement, &[])?;
            changed += statement.raw_execute().map_err(sql_error)?;
        }
        Some(parameters) => {
            for row in 0..parameters.num_rows() {
                bind(&mut statement, &parameter_row(parameters, row)?)?;
                changed += statement.raw_execute().map_err(sql_error)?;
            }
        }
    }
    Ok(changed as i64)
}
