//! The stored-Arrow server: uploads come back whole, in messages of about
//! `STORED_BATCH_BYTES`; what `do_get` sends are the file's bytes as they
//! are stored; files that are damaged, cut short or not Arrow IPC are
//! refused with `DataLoss` and a message that names the problem and no
//! path, and the server goes on serving; bad and cut-off uploads leave
//! nothing behind; a client that goes away stops its download; pyarrow
//! uploads, reads, and writes files that our client reads.

use crate::common;
use crate::stored_arrow_client;
use crate::stored_arrow_server;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{FlightClient, FlightData, FlightDescriptor, Ticket};
use arrow_ipc::CompressionType;
use arrow_ipc::writer::{FileWriter, StreamWriter};
use arrow_select::concat::concat_batches;
use common::{ChildProcess, TestServer, block_on, runtime};
use futures::{StreamExt, TryStreamExt, stream};
use stored_arrow_client::{download, upload};
use stored_arrow_server::{
    Repository, STORED_BATCH_BYTES, serve_repository, stored_bytes,
};
use tonic::{Code, Request, Status};

async fn start(repo: &Path) -> TestServer {
    let repository = Repository::new(repo).expect("a repository");
    TestServer::start(|listener, shutdown| {
        serve_repository(listener, repository, shutdown)
    })
    .await
}

fn ints(first: i64, rows: usize) -> RecordBatch {
    let values = Int64Array::from_iter_values(first..first + rows as i64);
    let names = StringArray::from_iter_values(
        (first..first + rows as i64).map(|i| format!("row {i}")),
    );
    RecordBatch::try_from_iter([
        ("ints", Arc::new(values) as ArrayRef),
        ("names", Arc::new(names) as ArrayRef),
    ])
    .expect("a batch")
}

fn status(error: FlightError) -> Status {
    match error {
        FlightError::Tonic(status) => *status,
        other => panic!("not a gRPC status: {other}"),
    }
}

/// `status` has `code`, mentions `mentions`, and shows no path of `repo`.
fn assert_clean(status: &Status, code: Code, mentions: &str, repo: &Path) {
    assert_eq!(status.code(), code, "{status:?}");
    let message = status.message();
    assert!(message.contains(mentions), "{message:?} lacks {mentions:?}");
    let dir = repo.to_string_lossy();
    assert!(!message.contains(dir.as_ref()), "{message:?} shows a path");
    assert!(!message.contains('\n'), "{message:?} has several lines");
}

/// An Arrow IPC file of `batches`, as arrow-rs writes it.
fn ipc_file(batches: &[RecordBatch]) -> Vec<u8> {
    let mut writer =
        FileWriter::try_new(Vec::new(), &batches[0].schema()).expect("a writer");
    for batch in batches {
        writer.write(batch).expect("written");
    }
    writer.into_inner().expect("finished")
}

#[test]
fn uploads_come_back_whole_in_larger_messages() {
    let runtime = runtime();
    let repo = tempfile::tempdir().expect("a temp dir");
    block_on(&runtime, "the round trip", async {
        let server = start(repo.path()).await;
        let mut client = server.client().await;
        let sent: Vec<_> = (0..200).map(|i| ints(i * 1000, 1000)).collect();
        upload(&mut client, "numbers.arrow", sent.clone())
            .await
            .expect("stored");
        let (info, got) = download(&mut client, "numbers.arrow")
            .await
            .expect("read back");
        assert_eq!(info.total_records, 200_000);
        let schema = info.try_decode_schema().expect("a schema");
        assert_eq!(&schema, sent[0].schema().as_ref());
        let all = |batches: &[RecordBatch]| {
            concat_batches(&batches[0].schema(), batches).expect("concat")
        };
        assert_eq!(all(&got), all(&sent));
        // Gathered: fewer, larger batches, none above the limit.
        assert!(got.len() <= 10, "{} batches", got.len());
        for batch in &got {
            assert!(stored_bytes(batch) <= STORED_BATCH_BYTES);
        }
        drop(client);
        server.stop().await;
    });
}

#[test]
fn do_get_sends_the_bytes_of_the_file_as_they_are_stored() {
    let runtime = runtime();
    let repo = tempfile::tempdir().expect("a temp dir");
    let batches: Vec<_> = (0..5).map(|i| ints(i * 10, 10)).collect();
    let file = ipc_file(&batches);
    std::fs::write(repo.path().join("given.arrow"), &file).expect("written");
    block_on(&runtime, "the raw download", async {
        let server = start(repo.path()).await;
        let mut raw = FlightServiceClient::new(server.channel().await);
        let ticket = Ticket::new("given.arrow");
        let messages: Vec<FlightData> = raw
            .do_get(Request::new(ticket))
            .await
            .expect("a stream")
            .into_inner()
            .try_collect()
            .await
            .expect("messages");
        assert_eq!(messages.len(), 1 + batches.len());
        // Every header and every body is a run of the file's own bytes.
        let mut at = 0;
        for message in &messages {
            for part in [&message.data_header, &message.data_body] {
                if part.is_empty() {
                    continue;
                }
                let found = file[at..]
                    .windows(part.len())
                    .position(|window| window == &part[..])
                    .expect("the bytes of the file");
                at += found + part.len();
            }
        }
        drop(raw);
        server.stop().await;
    });
}

/// Files that cannot be served, and what the refusal must mention.
fn damaged_files() -> Vec<(String, Vec<u8>, &'static str)> {
    let good = ipc_file(&[ints(0, 100), ints(100, 100)]);
    let mut files = vec![
        (
            "text.arrow".to_string(),
            b"id,name\n1,x\n".to_vec(),
            "ARROW1",
        ),
        ("empty.arrow".to_string(), Vec::new(), "cut short"),
    ];
    for cut in [7, 8, 64, good.len() / 2, good.len() - 11, good.len() - 1] {
        files.push((
            format!("cut-{cut}.arrow"),
            good[..cut].to_vec(),
            "cut short",
        ));
    }
    let mut stream = Vec::new();
    let mut writer =
        StreamWriter::try_new(&mut stream, &ints(0, 1).schema()).expect("writer");
    writer.write(&ints(0, 10)).expect("written");
    writer.finish().expect("finished");
    files.push(("stream.arrow".to_string(), stream, "ARROW1"));
    // Magic at both ends, a footer of garbage.
    let mut garbage = b"ARROW1\0\0".to_vec();
    garbage.extend([0x55; 40]);
    garbage.extend(40_i32.to_le_bytes());
    garbage.extend(b"ARROW1");
    files.push(("garbage.arrow".to_string(), garbage, "footer"));
    // A record batch's header damaged where the footer points.
    let mut bad_header = good.clone();
    let at = good.len() / 2;
    bad_header[at..at + 64].fill(0xff);
    files.push((
        "bad-header.arrow".to_string(),
        bad_header,
        "message at byte",
    ));
    files
}

#[test]
fn damaged_files_are_refused_before_a_byte_is_sent() {
    let runtime = runtime();
    let repo = tempfile::tempdir().expect("a temp dir");
    let files = damaged_files();
    for (name, bytes, _) in &files {
        std::fs::write(repo.path().join(name), bytes).expect("written");
    }
    upload_then_check(&runtime, repo.path(), &files);
}

fn upload_then_check(
    runtime: &tokio::runtime::Runtime,
    repo: &Path,
    files: &[(String, Vec<u8>, &'static str)],
) {
    block_on(runtime, "the damaged files", async {
        let server = start(repo).await;
        let mut client = server.client().await;
        for (name, _, mentions) in files {
            let error = download(&mut client, name)
                .await
                .expect_err("a damaged file is refused");
            let error = status(error);
            assert_clean(&error, Code::DataLoss, mentions, repo);
            assert!(error.message().contains(name.as_str()), "{error:?}");
            // do_get alone refuses too, before its first message.
            let ticket = Ticket::new(name.clone());
            let result = client.do_get(ticket).await;
            let error = match result {
                Ok(mut stream) => status(stream.try_next().await.expect_err(name)),
                Err(error) => status(error),
            };
            assert_eq!(error.code(), Code::DataLoss, "{name}: {error:?}");
        }
        // None is listed, and the server goes on serving.
        let listed: Vec<_> = client
            .list_flights("")
            .await
            .expect("a list")
            .try_collect()
            .await
            .expect("listed");
        assert!(listed.is_empty(), "{listed:?}");
        upload(&mut client, "fine.arrow", vec![ints(0, 3)])
            .await
            .expect("stored");
        let (_, batches) = download(&mut client, "fine.arrow").await.expect("read");
        assert_eq!(batches, vec![ints(0, 3)]);
        drop(client);
        server.stop().await;
    });
}

/// The entries of `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("a readable dir")
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

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what} did not happen within 5 s");
}

async fn encoded(name: &str, batches: Vec<RecordBatch>) -> Vec<FlightData> {
    let descriptor = FlightDescriptor::new_path(vec![name.to_string()]);
    FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(descriptor))
        .build(stream::iter(batches.into_iter().map(Ok)))
        .map(|data| data.expect("encoded"))
        .collect()
        .await
}

#[test]
fn bad_and_cut_off_uploads_leave_nothing_behind() {
    let runtime = runtime();
    let repo = tempfile::tempdir().expect("a temp dir");
    block_on(&runtime, "the bad uploads", async {
        let mut broken = encoded("broken.arrow", vec![ints(0, 10)]).await;
        let not_ipc =
            FlightData::new().with_data_header(&b"not an IPC message"[..]);
        broken.push(not_ipc);
        let begun = encoded("cut.arrow", vec![ints(0, 100_000)]).await;
        let server = start(repo.path()).await;
        let mut raw = FlightServiceClient::new(server.channel().await);
        let error = raw
            .do_put(Request::new(stream::iter(broken)))
            .await
            .expect_err("refused");
        assert_clean(
            &error,
            Code::InvalidArgument,
            "\"broken.arrow\"",
            repo.path(),
        );
        let error = raw
            .do_put(Request::new(stream::iter(Vec::<FlightData>::new())))
            .await
            .expect_err("refused");
        assert_clean(&error, Code::InvalidArgument, "empty", repo.path());
        let nameless = encoded("x", vec![ints(0, 1)])
            .await
            .into_iter()
            .map(|mut data| {
                data.flight_descriptor = None;
                data
            })
            .collect::<Vec<_>>();
        let error = raw
            .do_put(Request::new(stream::iter(nameless)))
            .await
            .expect_err("refused");
        assert_clean(&error, Code::InvalidArgument, "descriptor", repo.path());

        // The schema and a batch, then nothing until the client goes away.
        let messages = stream::iter(begun).chain(stream::pending());
        let mut cut = raw.clone();
        let call =
            tokio::spawn(async move { cut.do_put(Request::new(messages)).await });
        eventually("the start of the upload", || {
            entries(repo.path()).len() == 1
        })
        .await;
        call.abort();
        let _ = call.await;
        eventually("the removal of the cut-off upload", || {
            entries(repo.path()).is_empty()
        })
        .await;
        drop(raw);
        server.stop().await;
    });
}

#[test]
fn a_client_that_goes_away_stops_its_download() {
    let runtime = runtime();
    let repo = tempfile::tempdir().expect("a temp dir");
    block_on(&runtime, "the abandoned download", async {
        let server = start(repo.path()).await;
        let mut client = server.client().await;
        let batches: Vec<_> = (0..64).map(|i| ints(i * 65_536, 65_536)).collect();
        upload(&mut client, "large.arrow", batches)
            .await
            .expect("stored");
        for _ in 0..20 {
            let mut stream = client
                .do_get(Ticket::new("large.arrow"))
                .await
                .expect("a stream");
            stream.try_next().await.expect("a first batch");
            drop(stream);
        }
        let (info, _) = download(&mut client, "large.arrow").await.expect("read");
        assert_eq!(info.total_records, 64 * 65_536);
        drop(client);
        // Stops within the fixture's time: no download is left running.
        server.stop().await;
    });
}

#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with pyarrow (see recipes/build.rs)"
)]
fn pyarrow_uploads_and_reads_and_its_files_are_served() {
    let runtime = runtime();
    let repo = tempfile::tempdir().expect("a temp dir");
    let server = block_on(&runtime, "starting the server", start(repo.path()));
    let mut client: FlightClient =
        block_on(&runtime, "connecting", server.client());
    block_on(&runtime, "our upload", async {
        upload(&mut client, "from_rust.arrow", vec![ints(0, 5), ints(5, 5)])
            .await
            .expect("stored")
    });
    let python = common::python();
    let repo_arg = repo.path().as_os_str();
    let url = server.grpc_url();
    let mut process = ChildProcess::python(
        &python,
        "stored_arrow_client.py",
        &[url.as_ref(), repo_arg],
    );
    let mut lines = Vec::new();
    for _ in 0..3 {
        lines.push(process.next_line());
    }
    let finished = process.stop();
    assert!(finished.success(), "{}", finished.report());
    assert_eq!(
        lines,
        [
            "from_rust.arrow: 10 rows, ints 0..9",
            "from_pyarrow.arrow: 30000 rows read back equal",
            "wrote written_by_pyarrow.arrow",
        ]
    );
    block_on(&runtime, "reading pyarrow's file", async {
        let (info, batches) = download(&mut client, "written_by_pyarrow.arrow")
            .await
            .expect("read");
        assert_eq!(info.total_records, 3000);
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 3000);
        drop(client);
        server.stop().await;
    });
}

/// An upload of a few hundred bytes that claims 4 EiB once decompressed,
/// LZ4 or ZSTD, is refused before it is decompressed (unguarded, LZ4's
/// failed allocation aborts the server); an upload after it is stored.
#[test]
fn a_compressed_upload_claiming_4_eib_is_refused_and_the_server_serves_on() {
    let runtime = runtime();
    let repo = tempfile::tempdir().expect("a temp dir");
    block_on(&runtime, "the compression bombs", async {
        let server = start(repo.path()).await;
        let mut raw = FlightServiceClient::new(server.channel().await);
        for compression in [CompressionType::LZ4_FRAME, CompressionType::ZSTD] {
            let descriptor = FlightDescriptor::new_path(vec!["bomb.arrow".into()]);
            let bomb = common::compression_bomb(descriptor, compression).await;
            common::assert_bomb_refused(common::put(&mut raw, None, bomb).await);
        }
        let mut client = server.client().await;
        upload(&mut client, "fine.arrow", vec![ints(0, 3)])
            .await
            .expect("stored");
        drop((client, raw));
        server.stop().await;
    });
}
