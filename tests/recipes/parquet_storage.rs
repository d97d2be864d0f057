//! The Parquet storage servers of the two chapters, simple and streaming,
//! tested the same way: the steps of the recipe, and everything a client can
//! get wrong or break. Each test runs against both servers, each on its own
//! port, repository and runtime, so the tests run in parallel.
//!
//! The names a client should not send, which the first chapter's program
//! tries with a few calls, are tried here with every call that takes a
//! name, and the files around the repository are checked to be unchanged.

use crate::common;

use crate::parquet_storage_server;

use crate::streaming_parquet_server;

use crate::parquet_storage_names;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{
    Action, FlightClient, FlightData, FlightDescriptor, FlightInfo, Ticket,
};
use common::{ChildProcess, TestServer};
use futures::{StreamExt, TryStreamExt, stream};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

#[derive(Clone, Copy, Debug)]
enum Kind {
    Simple,
    Streaming,
}

/// What a test body gets: a running server and the folders around it.
#[derive(Clone, Debug)]
struct Ctx {
    kind: Kind,
    addr: SocketAddr,
    /// The server's repository.
    repo: PathBuf,
    /// A folder next to the repository that no call may touch; it holds
    /// `secret.parquet`, a valid dataset.
    outside: PathBuf,
    /// The folder that holds both.
    root: PathBuf,
}

impl Ctx {
    async fn client(&self) -> FlightClient {
        FlightClient::new(self.channel().await)
    }

    async fn raw_client(&self) -> FlightServiceClient<Channel> {
        FlightServiceClient::new(self.channel().await)
    }

    async fn channel(&self) -> Channel {
        channel_to(format!("http://{}", self.addr)).await
    }

    /// The names in the repository, hidden files too, sorted.
    fn repo_entries(&self) -> Vec<String> {
        entries(&self.repo)
    }
}

async fn channel_to(url: String) -> Channel {
    let endpoint = Channel::from_shared(url).expect("a valid URL");
    common::within("connecting to the server", endpoint.connect())
        .await
        .expect("the server accepts connections")
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("the folder can be listed")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Runs `test` against each server, with a timeout, and checks that the
/// server stops cleanly afterwards.
fn for_each_server<F, Fut>(test: F)
where
    F: Fn(Ctx) -> Fut,
    Fut: Future<Output = ()>,
{
    for kind in [Kind::Simple, Kind::Streaming] {
        let runtime = common::runtime();
        let root = tempfile::tempdir().expect("a temporary folder");
        let repo = root.path().join("repo");
        let outside = root.path().join("outside");
        std::fs::create_dir(&outside).expect("the outside folder");
        write_parquet(&outside.join("secret.parquet"), &characters());

        runtime.block_on(async {
            let server = start(kind, &repo).await;
            let ctx = Ctx {
                kind,
                addr: server.addr,
                repo: repo.clone(),
                outside: outside.clone(),
                root: root.path().to_path_buf(),
            };
            common::within(&format!("{kind:?}: the test"), test(ctx)).await;
            server.stop().await;
        });
        root.close().expect("the temporary folder can be removed");
    }
}

/// The server of `kind` on the repository `repo`.
async fn start(kind: Kind, repo: &Path) -> TestServer {
    match kind {
        Kind::Simple => {
            let repository = parquet_storage_server::Repository::new(repo)
                .expect("the repository");
            TestServer::start(|listener, shutdown| {
                parquet_storage_server::serve_repository(
                    listener, repository, shutdown,
                )
            })
            .await
        }
        Kind::Streaming => {
            let repository = streaming_parquet_server::Repository::new(repo)
                .expect("the repository");
            TestServer::start(|listener, shutdown| {
                streaming_parquet_server::serve_repository(
                    listener, repository, shutdown,
                )
            })
            .await
        }
    }
}

fn characters() -> RecordBatch {
    let names = StringArray::from(vec!["Mario", "Luigi", "Peach"]);
    RecordBatch::try_from_iter([("Character", Arc::new(names) as ArrayRef)])
        .expect("a batch")
}

fn ints(value: i64, rows: usize) -> RecordBatch {
    let values = Int64Array::from(vec![value; rows]);
    RecordBatch::try_from_iter([("ints", Arc::new(values) as ArrayRef)])
        .expect("a batch")
}

fn write_parquet(path: &Path, batch: &RecordBatch) {
    let file = std::fs::File::create(path).expect("a file");
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)
            .expect("a writer");
    writer.write(batch).expect("written");
    writer.close().expect("closed");
}

fn path_descriptor(name: &str) -> FlightDescriptor {
    FlightDescriptor::new_path(vec![name.to_string()])
}

fn status(error: FlightError) -> Status {
    match error {
        FlightError::Tonic(status) => *status,
        other => panic!("expected an error from the server, got {other}"),
    }
}

async fn put(
    client: &mut FlightClient,
    name: &str,
    batches: Vec<RecordBatch>,
) -> Result<(), Status> {
    let schema = batches.first().map(RecordBatch::schema);
    let mut encoder = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(path_descriptor(name)));
    if let Some(schema) = schema {
        encoder = encoder.with_schema(schema);
    }
    let flight_data = encoder.build(stream::iter(batches.into_iter().map(Ok)));
    let results = client.do_put(flight_data).await.map_err(status)?;
    results.try_collect::<Vec<_>>().await.map_err(status)?;
    Ok(())
}

async fn get(
    client: &mut FlightClient,
    name: &str,
) -> Result<Vec<RecordBatch>, Status> {
    let batches = client
        .do_get(Ticket::new(name.to_string()))
        .await
        .map_err(status)?;
    batches.try_collect().await.map_err(status)
}

async fn info(client: &mut FlightClient, name: &str) -> Result<FlightInfo, Status> {
    client
        .get_flight_info(path_descriptor(name))
        .await
        .map_err(status)
}

async fn drop_dataset(client: &mut FlightClient, name: &str) -> Result<(), Status> {
    let results = client
        .do_action(Action::new("drop_dataset", name.to_string()))
        .await
        .map_err(status)?;
    results.try_collect::<Vec<_>>().await.map_err(status)?;
    Ok(())
}

async fn list(client: &mut FlightClient) -> Vec<FlightInfo> {
    client
        .list_flights("")
        .await
        .expect("list_flights answers")
        .try_collect()
        .await
        .expect("the listing arrives")
}

fn listed_names(infos: &[FlightInfo]) -> Vec<String> {
    infos
        .iter()
        .map(|info| {
            info.flight_descriptor
                .as_ref()
                .expect("a descriptor")
                .path
                .join("/")
        })
        .collect()
}

/// All the values of the `ints` column.
fn int_values(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|batch| {
            let column = batch.column(0).as_any().downcast_ref::<Int64Array>();
            column.expect("an Int64 column").values().to_vec()
        })
        .collect()
}

/// Checks what every error of these servers must be: the expected code,
/// one line, no backtrace, no path of the server's file system.
fn assert_clean(ctx: &Ctx, status: &Status, code: Code, mentions: &str) {
    let message = status.message();
    assert_eq!(status.code(), code, "{:?}: {status:?}", ctx.kind);
    assert!(
        message.contains(mentions),
        "{:?}: {message:?} should mention {mentions:?}",
        ctx.kind
    );
    common::assert_clean_message(message, &[]);
    let root = ctx.root.to_string_lossy();
    assert!(
        !message.contains(root.as_ref()),
        "{:?}: {message:?} shows a path",
        ctx.kind
    );
}

/// Waits until `done` holds, at most 10 s.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn the_recipe_steps_put_describe_get_list_and_drop() {
    for_each_server(|ctx| async move {
        let mut client = ctx.client().await;
        put(&mut client, "uploaded.parquet", vec![characters()])
            .await
            .expect("the upload is stored");

        let info = info(&mut client, "uploaded.parquet")
            .await
            .expect("the info");
        let file = ctx.repo.join("uploaded.parquet");
        let size = std::fs::metadata(&file).expect("the dataset's file").len();
        assert_eq!(info.total_records, 3);
        assert_eq!(u64::try_from(info.total_bytes), Ok(size));
        let descriptor = info.flight_descriptor.clone().expect("a descriptor");
        assert_eq!(descriptor, path_descriptor("uploaded.parquet"));
        assert_eq!(info.endpoint.len(), 1);
        let endpoint = &info.endpoint[0];
        let ticket = endpoint.ticket.clone().expect("a ticket");
        assert_eq!(ticket.ticket, "uploaded.parquet".as_bytes());
        // No location: the data is on the server that was asked.
        assert_eq!(endpoint.location, []);
        let schema = info.clone().try_decode_schema().expect("a schema");
        assert_eq!(schema.fields(), characters().schema().fields());

        let batches = get(&mut client, "uploaded.parquet")
            .await
            .expect("the dataset");
        assert_eq!(pretty(&batches), pretty(&[characters()]));
        assert_eq!(batches[0].schema(), characters().schema());

        let listed = list(&mut client).await;
        assert_eq!(listed, [info]);

        let actions: Vec<_> = client
            .list_actions()
            .await
            .expect("list_actions answers")
            .try_collect()
            .await
            .expect("the actions arrive");
        let types: Vec<&str> = actions.iter().map(|a| a.r#type.as_str()).collect();
        assert_eq!(types, ["drop_dataset"]);

        drop_dataset(&mut client, "uploaded.parquet")
            .await
            .expect("dropped");
        assert!(list(&mut client).await.is_empty());
        assert!(ctx.repo_entries().is_empty(), "{:?}", ctx.repo_entries());
    });
}

/// The batches as arrow's pretty table, for comparing tables whatever
/// their batching.
fn pretty(batches: &[RecordBatch]) -> String {
    arrow_cast::pretty::pretty_format_batches(batches)
        .expect("printable batches")
        .to_string()
}

#[test]
fn an_upload_replaces_a_dataset_of_the_same_name() {
    for_each_server(|ctx| async move {
        let mut client = ctx.client().await;
        put(&mut client, "numbers", vec![ints(1, 10)])
            .await
            .expect("first");
        put(&mut client, "numbers", vec![ints(2, 20), ints(2, 5)])
            .await
            .expect("second");
        let batches = get(&mut client, "numbers").await.expect("the dataset");
        assert_eq!(int_values(&batches), vec![2; 25]);
        assert_eq!(ctx.repo_entries(), ["numbers"]);
    });
}

/// Names that are not a plain file name, each with what the error says.
fn bad_names(ctx: &Ctx) -> Vec<(String, &'static str)> {
    let secret = ctx.outside.join("secret.parquet");
    vec![
        (String::new(), "is empty"),
        (".".into(), "starts with a dot"),
        ("..".into(), "starts with a dot"),
        ("../outside/secret.parquet".into(), "path separator"),
        ("repo/../../outside/secret.parquet".into(), "path separator"),
        ("x/../../outside/secret.parquet".into(), "path separator"),
        (secret.to_string_lossy().into_owned(), "path separator"),
        ("/etc/passwd".into(), "path separator"),
        ("sub/dir.parquet".into(), "path separator"),
        ("..\\outside\\secret.parquet".into(), "path separator"),
        ("a\\b.parquet".into(), "path separator"),
        (".hidden.parquet".into(), "starts with a dot"),
        (".upload-abc".into(), "starts with a dot"),
        ("nul\0byte".into(), "control character"),
        ("line\nbreak".into(), "control character"),
        ("x".repeat(256), "longer than 255 bytes"),
    ]
}

#[test]
fn names_that_are_not_plain_file_names_are_refused_by_every_call() {
    for_each_server(|ctx| async move {
        let mut client = ctx.client().await;
        let before_outside =
            std::fs::read(ctx.outside.join("secret.parquet")).expect("secret");
        for (name, problem) in bad_names(&ctx) {
            let shown = format!("{name:?}");
            let refused = put(&mut client, &name, vec![characters()]).await;
            let error = refused.expect_err(&format!("put {shown} must be refused"));
            assert_clean_name_error(&ctx, &error, problem, &name);

            let error = info(&mut client, &name).await.expect_err("info refused");
            assert_clean_name_error(&ctx, &error, problem, &name);

            let error = get(&mut client, &name).await.expect_err("get refused");
            assert_clean_name_error(&ctx, &error, problem, &name);

            let error = drop_dataset(&mut client, &name)
                .await
                .expect_err("drop refused");
            assert_clean_name_error(&ctx, &error, problem, &name);
        }
        assert!(ctx.repo_entries().is_empty(), "{:?}", ctx.repo_entries());
        assert_eq!(entries(&ctx.outside), ["secret.parquet"]);
        assert_eq!(entries(&ctx.root), ["outside", "repo"]);
        let after_outside =
            std::fs::read(ctx.outside.join("secret.parquet")).expect("secret");
        assert_eq!(before_outside, after_outside);
    });
}

fn assert_clean_name_error(ctx: &Ctx, error: &Status, problem: &str, name: &str) {
    assert_eq!(
        error.code(),
        Code::InvalidArgument,
        "{:?}: {error:?}",
        ctx.kind
    );
    assert!(
        error.message().contains(problem),
        "{:?}: {error:?}",
        ctx.kind
    );
    assert!(error.message().starts_with("dataset name "), "{error:?}");
    // The name itself is shown, escaped; a long one is cut short.
    assert!(error.message().len() < 200, "{error:?}");
    common::assert_clean_message(error.message(), &[name]);
}

#[test]
fn tickets_action_bodies_and_descriptors_must_name_one_dataset() {
    for_each_server(|ctx| async move {
        let mut client = ctx.client().await;
        put(&mut client, "a.parquet", vec![characters()])
            .await
            .expect("stored");

        let error = client
            .do_get(Ticket::new(vec![0xff, 0xfe]))
            .await
            .map(drop)
            .map_err(status)
            .expect_err("a ticket that is not UTF-8");
        assert_clean(&ctx, &error, Code::InvalidArgument, "UTF-8");

        let error = drop_dataset_bytes(&mut client, vec![0xc3])
            .await
            .expect_err("not UTF-8");
        assert_clean(&ctx, &error, Code::InvalidArgument, "UTF-8");

        let descriptors = [
            FlightDescriptor::new_cmd("a.parquet"),
            FlightDescriptor::new_path(vec![]),
            FlightDescriptor::new_path(vec!["a.parquet".into(), "b".into()]),
        ];
        for descriptor in descriptors {
            let error = client
                .get_flight_info(descriptor.clone())
                .await
                .map_err(status)
                .expect_err("a descriptor that names no single dataset");
            assert_clean(&ctx, &error, Code::InvalidArgument, "PATH descriptor");

            let flight_data = FlightDataEncoderBuilder::new()
                .with_flight_descriptor(Some(descriptor))
                .build(stream::iter([Ok(characters())]));
            let error = put_flight_data(
                &ctx,
                flight_data.map(|d| d.expect("encoded")).collect().await,
            )
            .await
            .expect_err("an upload to a descriptor that names no single dataset");
            assert_clean(&ctx, &error, Code::InvalidArgument, "PATH descriptor");
        }

        let no_descriptor: Vec<FlightData> = FlightDataEncoderBuilder::new()
            .build(stream::iter([Ok(characters())]))
            .map(|d| d.expect("encoded"))
            .collect()
            .await;
        let error = put_flight_data(&ctx, no_descriptor)
            .await
            .expect_err("no descriptor");
        assert_clean(&ctx, &error, Code::InvalidArgument, "no flight descriptor");
        assert_eq!(ctx.repo_entries(), ["a.parquet"]);
    });
}

async fn drop_dataset_bytes(
    client: &mut FlightClient,
    body: Vec<u8>,
) -> Result<(), Status> {
    let results = client
        .do_action(Action::new("drop_dataset", body))
        .await
        .map_err(status)?;
    results.try_collect::<Vec<_>>().await.map_err(status)?;
    Ok(())
}

/// Sends exactly `messages` as a DoPut call.
async fn put_flight_data(
    ctx: &Ctx,
    messages: Vec<FlightData>,
) -> Result<(), Status> {
    let mut client = ctx.raw_client().await;
    let mut results = client
        .do_put(Request::new(stream::iter(messages)))
        .await?
        .into_inner();
    while results.message().await?.is_some() {}
    Ok(())
}

#[test]
fn missing_datasets_and_unknown_actions_get_errors_that_name_them() {
    for_each_server(|ctx| async move {
        let mut client = ctx.client().await;
        let error = info(&mut client, "missing.parquet")
            .await
            .expect_err("missing");
        assert_clean(&ctx, &error, Code::NotFound, "\"missing.parquet\"");
        let error = get(&mut client, "missing.parquet")
            .await
            .expect_err("missing");
        assert_clean(&ctx, &error, Code::NotFound, "\"missing.parquet\"");
        let error = drop_dataset(&mut client, "missing.parquet")
            .await
            .expect_err("missing");
        assert_clean(&ctx, &error, Code::NotFound, "\"missing.parquet\"");

        let error = client
            .do_action(Action::new("delete_everything", "x"))
            .await
            .map(drop)
            .map_err(status)
            .expect_err("an unknown action");
        assert_clean(&ctx, &error, Code::Unimplemented, "\"delete_everything\"");
    });
}

#[test]
fn an_empty_upload_is_refused_and_a_schema_only_upload_stores_an_empty_dataset() {
    for_each_server(|ctx| async move {
        let error = put_flight_data(&ctx, vec![])
            .await
            .expect_err("nothing was sent");
        assert_clean(&ctx, &error, Code::InvalidArgument, "empty");

        // A descriptor and nothing else: no schema.
        let descriptor_only =
            FlightData::new().with_descriptor(path_descriptor("nothing"));
        let error = put_flight_data(&ctx, vec![descriptor_only])
            .await
            .expect_err("no schema");
        assert_clean(&ctx, &error, Code::InvalidArgument, "schema");
        assert!(ctx.repo_entries().is_empty(), "{:?}", ctx.repo_entries());

        let mut client = ctx.client().await;
        let schema = characters().schema();
        let schema_only = FlightDataEncoderBuilder::new()
            .with_schema(schema.clone())
            .with_flight_descriptor(Some(path_descriptor("empty.parquet")))
            .build(stream::empty());
        client
            .do_put(schema_only)
            .await
            .expect("the schema is accepted")
            .try_collect::<Vec<_>>()
            .await
            .expect("the empty dataset is stored");

        let info = info(&mut client, "empty.parquet").await.expect("the info");
        assert_eq!(info.total_records, 0);
        assert_eq!(
            info.try_decode_schema().expect("a schema").fields(),
            schema.fields()
        );

        let mut batches: FlightRecordBatchStream = client
            .do_get(Ticket::new("empty.parquet"))
            .await
            .expect("the dataset");
        let mut count = 0;
        while let Some(batch) = batches.try_next().await.expect("a batch") {
            count += batch.num_rows();
        }
        assert_eq!(count, 0);
        let received = batches.schema().expect("the schema was sent");
        assert_eq!(received.fields(), schema.fields());
        assert_eq!(listed_names(&list(&mut client).await), ["empty.parquet"]);
    });
}

#[test]
fn files_that_are_not_parquet_datasets_get_clean_errors_and_are_not_listed() {
    for_each_server(|ctx| async move {
        let mut client = ctx.client().await;
        put(&mut client, "good.parquet", vec![characters()])
            .await
            .expect("stored");
        let good =
            std::fs::read(ctx.repo.join("good.parquet")).expect("the good file");
        std::fs::write(ctx.repo.join("garbage.parquet"), b"not a parquet file")
            .expect("w");
        std::fs::write(ctx.repo.join("truncated.parquet"), &good[..good.len() / 2])
            .expect("w");
        std::fs::write(ctx.repo.join("empty.parquet"), b"").expect("w");
        std::fs::create_dir(ctx.repo.join("folder.parquet")).expect("a folder");
        // Left by an upload under way when a server was killed.
        std::fs::write(ctx.repo.join(".upload-stale"), &good).expect("w");
        std::os::unix::fs::symlink(
            ctx.outside.join("secret.parquet"),
            ctx.repo.join("link.parquet"),
        )
        .expect("a symbolic link");

        for name in ["garbage.parquet", "truncated.parquet", "empty.parquet"] {
            let error = info(&mut client, name).await.expect_err("corrupt");
            assert_clean(&ctx, &error, Code::DataLoss, &format!("{name:?}"));
            let error = get(&mut client, name).await.expect_err("corrupt");
            assert_clean(&ctx, &error, Code::DataLoss, &format!("{name:?}"));
        }
        for name in ["folder.parquet", "link.parquet"] {
            let error = info(&mut client, name).await.expect_err("not a dataset");
            assert_clean(&ctx, &error, Code::NotFound, &format!("{name:?}"));
            let error = get(&mut client, name).await.expect_err("not a dataset");
            assert_clean(&ctx, &error, Code::NotFound, &format!("{name:?}"));
        }
        assert_eq!(listed_names(&list(&mut client).await), ["good.parquet"]);

        // Dropping a link removes the link, never what it points to.
        drop_dataset(&mut client, "link.parquet")
            .await
            .expect("the link is removed");
        drop_dataset(&mut client, "garbage.parquet")
            .await
            .expect("dropped");
        assert_eq!(entries(&ctx.outside), ["secret.parquet"]);
        let error = drop_dataset(&mut client, "folder.parquet")
            .await
            .expect_err("a folder");
        assert_clean(&ctx, &error, Code::Internal, "\"folder.parquet\"");
        assert_eq!(
            ctx.repo_entries(),
            [
                ".upload-stale",
                "empty.parquet",
                "folder.parquet",
                "good.parquet",
                "truncated.parquet"
            ]
        );
    });
}

/// A schema message, one good batch, then a message that is not Arrow IPC.
async fn broken_upload(name: &str) -> Vec<FlightData> {
    let mut messages: Vec<FlightData> = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(path_descriptor(name)))
        .build(stream::iter([Ok(ints(7, 100))]))
        .map(|d| d.expect("encoded"))
        .collect()
        .await;
    messages.push(FlightData::new().with_data_header(&b"not an IPC message"[..]));
    messages
}

#[test]
fn an_upload_that_fails_midway_leaves_nothing_behind() {
    for_each_server(|ctx| async move {
        let mut client = ctx.client().await;
        put(&mut client, "kept", vec![ints(1, 10)])
            .await
            .expect("stored");

        for name in ["kept", "new"] {
            let error = put_flight_data(&ctx, broken_upload(name).await)
                .await
                .expect_err("a broken upload fails");
            assert_clean(&ctx, &error, Code::InvalidArgument, &format!("{name:?}"));
        }
        eventually("the removal of unfinished uploads", || {
            ctx.repo_entries() == ["kept"]
        })
        .await;
        let batches = get(&mut client, "kept").await.expect("the old dataset");
        assert_eq!(int_values(&batches), vec![1; 10]);
    });
}

#[test]
fn an_upload_cut_off_midway_leaves_nothing_behind() {
    for_each_server(|ctx| async move {
        let mut client = ctx.client().await;
        put(&mut client, "kept", vec![ints(1, 10)])
            .await
            .expect("stored");

        for name in ["kept", "new"] {
            // The schema and a batch, then nothing: the upload hangs until
            // the client goes away.
            let sent: Vec<FlightData> = FlightDataEncoderBuilder::new()
                .with_flight_descriptor(Some(path_descriptor(name)))
                .build(stream::iter([Ok(ints(9, 1000))]))
                .map(|d| d.expect("encoded"))
                .collect()
                .await;
            let messages = stream::iter(sent).chain(stream::pending());
            let mut raw = ctx.raw_client().await;
            let call = tokio::spawn(async move {
                raw.do_put(Request::new(messages)).await.map(drop)
            });

            if let Kind::Streaming = ctx.kind {
                // The streaming server writes as data arrives: it has begun.
                eventually("the start of the upload's file", || {
                    ctx.repo_entries().len() == 2
                })
                .await;
            } else {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            call.abort();
            let _ = call.await;
            eventually("the removal of the cut-off upload", || {
                ctx.repo_entries() == ["kept"]
            })
            .await;
        }
        let batches = get(&mut client, "kept").await.expect("the old dataset");
        assert_eq!(int_values(&batches), vec![1; 10]);
    });
}

#[test]
fn concurrent_uploads_to_one_name_never_leave_a_torn_dataset() {
    for_each_server(|ctx| async move {
        const UPLOADS: i64 = 4;
        const BATCHES: usize = 16;
        const ROWS: usize = 65_536;
        let mut client = ctx.client().await;
        put(&mut client, "race", vec![ints(-1, ROWS); BATCHES])
            .await
            .expect("stored");

        let mut uploads = Vec::new();
        for value in 0..UPLOADS {
            let ctx = ctx.clone();
            uploads.push(tokio::spawn(async move {
                let mut client = ctx.client().await;
                put(&mut client, "race", vec![ints(value, ROWS); BATCHES]).await
            }));
        }
        // Meanwhile every read sees one whole dataset, old or new.
        let mut reads = 0;
        while !uploads.iter().all(|upload| upload.is_finished()) && reads < 1000 {
            let values = int_values(
                &get(&mut client, "race").await.expect("a whole dataset"),
            );
            assert_eq!(values.len(), BATCHES * ROWS, "{:?}: a torn read", ctx.kind);
            assert!(
                values.iter().all(|v| *v == values[0]),
                "{:?}: a mixed read",
                ctx.kind
            );
            reads += 1;
        }
        for upload in uploads {
            upload
                .await
                .expect("the upload task")
                .expect("each upload succeeds");
        }
        let values =
            int_values(&get(&mut client, "race").await.expect("the dataset"));
        assert_eq!(values.len(), BATCHES * ROWS);
        assert!(
            values.iter().all(|v| *v == values[0]),
            "a mix of uploads was stored"
        );
        assert!((0..UPLOADS).contains(&values[0]), "no upload was stored");
        assert_eq!(ctx.repo_entries(), ["race"]);
    });
}

#[test]
fn the_servers_read_their_command_line() {
    for options in [
        parquet_storage_server::options,
        streaming_parquet_server::options,
    ] {
        let args = |list: &[&str]| {
            list.iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .into_iter()
        };
        assert_eq!(
            options(args(&[])),
            Ok(("127.0.0.1:8815".into(), None, None))
        );
        assert_eq!(
            options(args(&["0.0.0.0:9000", "--repo", "/srv/data"])),
            Ok(("0.0.0.0:9000".into(), Some("/srv/data".into()), None))
        );
        assert_eq!(
            options(args(&["--repo", "d", "[::1]:1"])),
            Ok(("[::1]:1".into(), Some("d".into()), None))
        );
        assert_eq!(
            options(args(&["--advertise", "grpc+tls://flight.example.com:443"])),
            Ok((
                "127.0.0.1:8815".into(),
                None,
                Some("grpc+tls://flight.example.com:443".into())
            ))
        );
        assert!(options(args(&["--repo"])).is_err());
        assert!(options(args(&["--advertise"])).is_err());
        assert!(options(args(&["--port", "1"])).is_err());
    }
}

/// The programs as a reader runs them: without `--repo` they serve
/// `datasets` in the current folder, with it the folder it names; SIGTERM
/// stops them cleanly.
#[test]
fn the_server_programs_serve_datasets_in_the_current_folder_or_the_repo_given() {
    let runtime = common::runtime();
    for name in ["parquet_storage_server", "streaming_parquet_server"] {
        let folder = tempfile::tempdir().expect("a temporary folder");
        let default = folder.path().join("datasets");
        let given = folder.path().join("given");
        let runs = [
            (vec![], &default),
            (vec!["--repo".as_ref(), given.as_os_str()], &given),
        ];
        for (options, repo) in runs {
            let mut command = common::example(name);
            command
                .arg("127.0.0.1:0")
                .args(options)
                .current_dir(folder.path());
            let mut server = ChildProcess::start(name, command);
            let url = format!("http://{}", server.serving_on());
            common::block_on(&runtime, name, async {
                let mut client = FlightClient::new(channel_to(url).await);
                put(&mut client, "uploaded.parquet", vec![characters()])
                    .await
                    .expect("stored");
                let listed = listed_names(&list(&mut client).await);
                assert_eq!(
                    listed,
                    ["uploaded.parquet"],
                    "{name}: a new repository"
                );
            });
            let finished = server.terminate();
            assert!(finished.success(), "{name}: {}", finished.report());
            assert_eq!(entries(repo), ["uploaded.parquet"], "{name}");
        }
        assert_eq!(entries(folder.path()), ["datasets", "given"], "{name}");
    }
}

#[test]
fn a_dataset_damaged_inside_gets_a_clean_error_when_read() {
    for_each_server(|ctx| async move {
        let mut client = ctx.client().await;
        put(&mut client, "damaged.parquet", vec![ints(5, 100_000)])
            .await
            .expect("stored");
        // The footer stays intact; the first page header does not.
        let path = ctx.repo.join("damaged.parquet");
        let mut bytes = std::fs::read(&path).expect("the file");
        bytes[4..64].fill(0xff);
        std::fs::write(&path, bytes).expect("damaged");

        let info = info(&mut client, "damaged.parquet")
            .await
            .expect("the footer is intact");
        assert_eq!(info.total_records, 100_000);
        let error = get(&mut client, "damaged.parquet")
            .await
            .expect_err("damaged");
        assert_clean(&ctx, &error, Code::DataLoss, "\"damaged.parquet\"");
    });
}

/// What the request body of a call looks like to the service: some data,
/// then the client's end-of-stream mark (`then` is `None`) or an error, as
/// hyper reports a stream that the client reset.
struct TestBody {
    chunks: Vec<&'static [u8]>,
    then: Option<Status>,
}

type Chunk = <tonic::body::Body as http_body::Body>::Data;

impl http_body::Body for TestBody {
    type Data = Chunk;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Chunk>, Status>>> {
        if !self.chunks.is_empty() {
            let chunk = self.chunks.remove(0);
            return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(
                Chunk::from(chunk),
            ))));
        }
        std::task::Poll::Ready(self.then.take().map(Err))
    }
}

/// Reads each body it gets to its end, as tonic does, and answers with what
/// `EndOfStream` says about it.
macro_rules! end_of_stream_of {
    ($server:ident, $body:expr) => {{
        use $server::{EndOfStream, EndOfStreamLayer};
        struct Drain;
        impl tower::Service<http::Request<tonic::body::Body>> for Drain {
            type Response = Result<(), Status>;
            type Error = std::convert::Infallible;
            type Future = Pin<
                Box<
                    dyn Future<Output = Result<Self::Response, Self::Error>> + Send,
                >,
            >;

            fn poll_ready(
                &mut self,
                _cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Result<(), Self::Error>> {
                std::task::Poll::Ready(Ok(()))
            }

            fn call(
                &mut self,
                request: http::Request<tonic::body::Body>,
            ) -> Self::Future {
                let (parts, mut body) = request.into_parts();
                let end = parts.extensions.get::<EndOfStream>().cloned();
                Box::pin(async move {
                    use http_body::Body as _;
                    while let Some(Ok(_)) = futures::future::poll_fn(|cx| {
                        Pin::new(&mut body).poll_frame(cx)
                    })
                    .await
                    {}
                    Ok(end.expect("the layer adds an EndOfStream").check())
                })
            }
        }
        let mut service = tower::Layer::layer(&EndOfStreamLayer, Drain);
        let request = http::Request::new(tonic::body::Body::new($body));
        tower::Service::call(&mut service, request)
    }};
}

#[test]
fn the_end_of_stream_layer_tells_a_complete_body_from_a_broken_off_one() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let complete = || TestBody {
            chunks: vec![b"schema", b"batch"],
            then: None,
        };
        let cancelled = || TestBody {
            chunks: vec![b"schema", b"batch"],
            then: Some(Status::cancelled("the client reset the stream")),
        };
        let results = [
            end_of_stream_of!(parquet_storage_server, complete()).await,
            end_of_stream_of!(streaming_parquet_server, complete()).await,
        ];
        for result in results {
            assert!(result.expect("infallible").is_ok(), "a complete body");
        }
        let results = [
            end_of_stream_of!(parquet_storage_server, cancelled()).await,
            end_of_stream_of!(streaming_parquet_server, cancelled()).await,
        ];
        for result in results {
            let status =
                result.expect("infallible").expect_err("a broken-off body");
            assert_eq!(status.code(), Code::Cancelled, "{status:?}");
            common::assert_clean_status(&status, &[]);
        }
    });
}

/// The server of `kind` on `repo`, whose endpoints name `advertise`.
async fn start_advertising(kind: Kind, repo: &Path, advertise: &str) -> TestServer {
    let advertise = Some(advertise.to_string());
    match kind {
        Kind::Simple => {
            let repository = parquet_storage_server::Repository::new(repo)
                .expect("the repository");
            TestServer::start(|listener, shutdown| {
                parquet_storage_server::serve_advertised(
                    listener, repository, advertise, shutdown,
                )
            })
            .await
        }
        Kind::Streaming => {
            let repository = streaming_parquet_server::Repository::new(repo)
                .expect("the repository");
            TestServer::start(|listener, shutdown| {
                streaming_parquet_server::serve_advertised(
                    listener, repository, advertise, shutdown,
                )
            })
            .await
        }
    }
}

/// With `--advertise URL`, every endpoint's location is that URL, and a
/// client that follows it reaches the server it names: here a second
/// server of the same repository, while the first one, which gave out the
/// flight info, has stopped.
#[test]
fn an_advertised_url_is_the_location_clients_follow() {
    for_each_server(|ctx| async move {
        let mut client = ctx.client().await;
        put(&mut client, "uploaded.parquet", vec![characters()])
            .await
            .expect("the upload is stored");
        let there = format!("grpc://{}", ctx.addr);
        let front = start_advertising(ctx.kind, &ctx.repo, &there).await;
        let mut asked = FlightClient::new(front.channel().await);
        for info in [
            info(&mut asked, "uploaded.parquet")
                .await
                .expect("the info"),
            list(&mut asked).await.remove(0),
        ] {
            let locations: Vec<&str> = info.endpoint[0]
                .location
                .iter()
                .map(|l| l.uri.as_str())
                .collect();
            assert_eq!(locations, [there.as_str()]);
        }
        let info = info(&mut asked, "uploaded.parquet").await.expect("info");
        drop(asked);
        front.stop().await;

        let endpoint = &info.endpoint[0];
        let channel =
            parquet_storage_names::flight_endpoint(&endpoint.location[0].uri)
                .expect("a Flight URL")
                .connect()
                .await
                .expect("the advertised server");
        let mut followed = FlightClient::new(channel);
        let ticket = endpoint.ticket.clone().expect("a ticket");
        let batches: Vec<RecordBatch> = followed
            .do_get(ticket)
            .await
            .expect("do_get")
            .try_collect()
            .await
            .expect("the dataset");
        assert_eq!(pretty(&batches), pretty(&[characters()]));
    });
}
