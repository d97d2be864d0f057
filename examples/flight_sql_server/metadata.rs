//! What the server tells generic clients first: GetSqlInfo, the XDBC type
//! info, catalogs and schemas.

use arrow_flight::error::FlightError;
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData,
    XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo,
    CommandGetXdbcTypeInfo, Nullable, Searchable, SqlInfo, SqlSupportedTransaction,
    XdbcDataType,
};
use arrow_flight::{FlightDescriptor, FlightInfo, Ticket};
use tonic::{Request, Response, Status};

use super::server::SqlServer;
use super::statements::{DoGetStream, batch_stream, built, flight_info};

// ANCHOR: sql_info
pub(crate) fn sql_info() -> Result<SqlInfoData, FlightError> {
    let mut info = SqlInfoDataBuilder::new();
    info.append(
        SqlInfo::FlightSqlServerName,
        "flight-cookbook SQLite server",
    );
    info.append(SqlInfo::FlightSqlServerVersion, rusqlite::version());
    info.append(SqlInfo::FlightSqlServerArrowVersion, "60.1");
    info.append(SqlInfo::FlightSqlServerReadOnly, false);
    info.append(SqlInfo::FlightSqlServerSql, true);
    info.append(SqlInfo::FlightSqlServerSubstrait, false);
    let transactions = SqlSupportedTransaction::Transaction as i32;
    info.append(SqlInfo::FlightSqlServerTransaction, transactions);
    info.append(SqlInfo::FlightSqlServerCancel, true);
    info.append(SqlInfo::FlightSqlServerBulkIngestion, true);
    info.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, true);
    info.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    info.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    info.append(SqlInfo::SqlDdlCatalog, false);
    info.append(SqlInfo::SqlDdlSchema, false);
    info.append(SqlInfo::SqlDdlTable, true);
    info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    info.append(SqlInfo::SqlTransactionsSupported, true);
    info.append(SqlInfo::SqlKeywords, &SQL_KEYWORDS[..]);
    info.append(SqlInfo::SqlNumericFunctions, &NUMERIC_FUNCTIONS[..]);
    info.append(SqlInfo::SqlStringFunctions, &STRING_FUNCTIONS[..]);
    info.build()
}
// ANCHOR_END: sql_info

/// SQLite's keywords beyond SQL-92's, as JDBC's `getSQLKeywords` lists them.
pub(crate) const SQL_KEYWORDS: [&str; 24] = [
    "ABORT",
    "ANALYZE",
    "ATTACH",
    "AUTOINCREMENT",
    "CONFLICT",
    "DATABASE",
    "DETACH",
    "EXCLUSIVE",
    "EXPLAIN",
    "FAIL",
    "GLOB",
    "IF",
    "IGNORE",
    "INDEXED",
    "INSTEAD",
    "ISNULL",
    "LIMIT",
    "NOTNULL",
    "OFFSET",
    "PLAN",
    "PRAGMA",
    "RAISE",
    "REGEXP",
    "VACUUM",
];
pub(crate) const NUMERIC_FUNCTIONS: [&str; 8] = [
    "abs", "max", "min", "random", "round", "sign", "total", "sum",
];
pub(crate) const STRING_FUNCTIONS: [&str; 12] = [
    "char", "glob", "hex", "instr", "length", "like", "lower", "ltrim", "replace",
    "substr", "trim", "upper",
];

pub(crate) fn type_info() -> Result<XdbcTypeInfoData, FlightError> {
    let mut types = XdbcTypeInfoDataBuilder::new();
    for (name, data_type, quoted) in [
        ("INTEGER", XdbcDataType::XdbcBigint, false),
        ("REAL", XdbcDataType::XdbcDouble, false),
        ("TEXT", XdbcDataType::XdbcVarchar, true),
        ("BLOB", XdbcDataType::XdbcVarbinary, false),
    ] {
        types.append(XdbcTypeInfo {
            type_name: name.to_string(),
            data_type,
            column_size: None,
            literal_prefix: quoted.then(|| "'".to_string()),
            literal_suffix: quoted.then(|| "'".to_string()),
            create_params: None,
            nullable: Nullable::NullabilityNullable,
            case_sensitive: quoted,
            searchable: Searchable::Full,
            unsigned_attribute: Some(false),
            fixed_prec_scale: false,
            auto_increment: Some(false),
            local_type_name: Some(name.to_string()),
            minimum_scale: None,
            maximum_scale: None,
            sql_data_type: data_type,
            datetime_subcode: None,
            num_prec_radix: None,
            interval_precision: None,
        });
    }
    types.build()
}

impl SqlServer {
    // ANCHOR: sql_info_calls
    pub(crate) async fn describe_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.user(&request)?;
        flight_info(&self.sql_info.schema(), query, request.into_inner())
    }

    pub(crate) async fn fetch_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.user(&request)?;
        let batch = built(query.into_builder(&self.sql_info).build())?;
        Ok(Response::new(batch_stream(batch)))
    }
    // ANCHOR_END: sql_info_calls

    pub(crate) async fn describe_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.user(&request)?;
        flight_info(&self.type_info.schema(), query, request.into_inner())
    }

    pub(crate) async fn fetch_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.user(&request)?;
        let batch = built(query.into_builder(&self.type_info).build())?;
        Ok(Response::new(batch_stream(batch)))
    }

    pub(crate) async fn describe_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.user(&request)?;
        let schema = query.into_builder().schema();
        flight_info(&schema, query, request.into_inner())
    }

    pub(crate) async fn fetch_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.user(&request)?;
        let batch = built(query.into_builder().build())?;
        Ok(Response::new(batch_stream(batch)))
    }

    pub(crate) async fn describe_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.user(&request)?;
        let schema = query.clone().into_builder().schema();
        flight_info(&schema, query, request.into_inner())
    }

    pub(crate) async fn fetch_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.user(&request)?;
        let mut builder = query.into_builder();
        builder.append("", "main");
        Ok(Response::new(batch_stream(built(builder.build())?)))
    }
}
