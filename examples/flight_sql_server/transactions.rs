//! Transactions: begin, and end with commit or rollback.

use std::sync::Arc;
use std::time::Instant;

use arrow_flight::sql::{
    ActionBeginTransactionRequest, ActionBeginTransactionResult,
    ActionEndTransactionRequest, EndTransaction,
};
use tonic::{Request, Status};

use super::server::{SqlServer, Transaction, expire, handle, lock, make_room};
use super::sqlite::{open, sql_error};

impl SqlServer {
    // ANCHOR: begin
    pub(crate) async fn begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        let owner = self.owner(&request)?;
        {
            let mut transactions = lock(&self.transactions);
            expire(&mut transactions);
            make_room(&mut transactions)?;
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
            rolled_back: false,
        };
        let mut transactions = lock(&self.transactions);
        make_room(&mut transactions)?;
        transactions.insert(id.clone(), transaction);
        Ok(ActionBeginTransactionResult {
            transaction_id: id.into(),
        })
    }
    // ANCHOR_END: begin

    // ANCHOR: end
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
        let id = &query.transaction_id[..];
        let session = self.session(&owner, Some(id), request.metadata()).await?;
        lock(&self.transactions).remove(id);
        session
            .run(move |connection| connection.execute_batch(end).map_err(sql_error))
            .await
    }
    // ANCHOR_END: end
}
