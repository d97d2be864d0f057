//! Transactions: begin, and end with commit or rollback.

use std::sync::Arc;
use std::time::Instant;

use arrow_flight::sql::{
    ActionBeginTransactionRequest, ActionBeginTransactionResult,
    ActionEndTransactionRequest, EndTransaction,
};
use tonic::{Request, Status};

use super::server::{
    MAX_TRANSACTIONS, Session, SqlServer, Transaction, expire, handle, lock,
};
use super::sqlite::{open, sql_error};

// ANCHOR: sql_transactions
impl SqlServer {
    pub(crate) async fn begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        let owner = self.owner(&request)?;
        {
            let mut transactions = lock(&self.transactions);
            expire(&mut transactions);
            if transactions.len() >= MAX_TRANSACTIONS {
                return Err(Status::resource_exhausted(format!(
                    "{MAX_TRANSACTIONS} transactions are open: end some first"
                )));
            }
        }
        let path = self.database.clone();
        let connection = tokio::task::spawn_blocking(move || {
            let connection = open(&path)?;
            connection.execute_batch("BEGIN").map_err(sql_error)?;
            Ok::<_, Status>(connection)
        })
        .await
        .map_err(|_| Status::internal("the transaction's thread failed"))??;
        let id = handle();
        let transaction = Transaction {
            owner,
            connection: Arc::new(tokio::sync::Mutex::new(connection)),
            used: Instant::now(),
        };
        lock(&self.transactions).insert(id.clone(), transaction);
        Ok(ActionBeginTransactionResult {
            transaction_id: id.into(),
        })
    }

    pub(crate) async fn end_transaction(
        &self,
        query: ActionEndTransactionRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        let owner = self.owner(&request)?;
        let end = match EndTransaction::try_from(query.action) {
            Ok(EndTransaction::Commit) => "COMMIT",
            Ok(EndTransaction::Rollback) => "ROLLBACK",
            _ => {
                return Err(Status::invalid_argument(
                    "end a transaction with commit or rollback",
                ));
            }
        };
        let Session::Transaction(shared) =
            self.session(&owner, Some(&query.transaction_id)).await?
        else {
            return Err(Status::not_found("no such transaction"));
        };
        lock(&self.transactions).remove(&query.transaction_id[..]);
        Session::Transaction(shared)
            .run(move |connection| connection.execute_batch(end).map_err(sql_error))
            .await
    }
}
// ANCHOR_END: sql_transactions
