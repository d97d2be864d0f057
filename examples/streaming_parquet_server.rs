// ANCHOR: uses
use std::fmt::Display;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use arrow_array::RecordBatch;
use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor,
    FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, PollInfo,
    PutResult, SchemaResult, Ticket,
};
use arrow_schema::SchemaRef;
use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt, TryStreamExt, future};
use http_body::Frame;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ParquetRecordBatchStreamBuilder};
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use tempfile::TempPath;
use tokio::net::TcpListener;
#[cfg(unix)]
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tonic::body::Body;
use tonic::service::InterceptorLayer;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status, Streaming};
use tower::{Layer, Service};
// ANCHOR_END: uses

// ANCHOR: names
// ANCHOR: copy_dataset_names
/// The longest dataset name accepted, in bytes: the longest file name that
/// common file systems allow.
pub const MAX_NAME_LEN: usize = 255;

/// Accepts only a plain file name: not empty, not too long, no path
/// separator, no control character, and no leading dot, which rules out
/// `.`, `..`, hidden files and the server's unfinished uploads.
pub fn check_name(name: &str) -> Result<(), Status> {
    let problem = if name.is_empty() {
        "is empty"
    } else if name.len() > MAX_NAME_LEN {
        "is longer than 255 bytes"
    } else if name.contains(['/', '\\']) {
        "contains a path separator"
    } else if name.chars().any(char::is_control) {
        "contains a control character"
    } else if name.starts_with('.') {
        "starts with a dot"
    } else {
        return Ok(());
    };
    Err(Status::invalid_argument(format!(
        "dataset name {} {problem}",
        shown(name)
    )))
}

/// The dataset a descriptor names: a PATH descriptor with one element.
pub fn dataset_name(
    descriptor: Option<&FlightDescriptor>,
) -> Result<String, Status> {
    let descriptor = descriptor.ok_or_else(|| {
        Status::invalid_argument(
            "no flight descriptor: the first message must name the dataset",
        )
    })?;
    match (descriptor.r#type(), descriptor.path.as_slice()) {
        (DescriptorType::Path, [name]) => Ok(name.clone()),
        _ => Err(Status::invalid_argument(
            "a dataset is named by a PATH descriptor with exactly one element",
        )),
    }
}

/// The dataset a ticket or an action body names, as UTF-8 text.
pub fn name_from_bytes(bytes: &[u8]) -> Result<String, Status> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| Status::invalid_argument("a dataset name must be UTF-8 text"))
}
// ANCHOR_END: copy_dataset_names
// ANCHOR_END: names

// ANCHOR: errors
// ANCHOR: copy_dataset_errors
/// A name as error messages show it: quoted, and cut short if it is long.
pub fn shown(name: &str) -> String {
    let short: String = name.chars().take(64).collect();
    if short.len() < name.len() {
        format!("{short:?}...")
    } else {
        format!("{short:?}")
    }
}

/// The first line of an error's text: some errors carry several.
fn one_line(error: impl Display) -> String {
    let text = error.to_string();
    text.lines().next().unwrap_or_default().to_string()
}

fn not_found(name: &str) -> Status {
    Status::not_found(format!("dataset {} not found", shown(name)))
}

/// An I/O error as the client sees it: its kind, no path; the server's log
/// gets the whole error.
fn io_error(name: &str, error: io::Error) -> Status {
    if error.kind() == io::ErrorKind::NotFound {
        return not_found(name);
    }
    eprintln!("dataset {}: {error}", shown(name));
    if out_of_space(&error) {
        return no_space(name);
    }
    Status::internal(format!("dataset {}: {}", shown(name), error.kind()))
}

/// Whether a write failed for want of space: a full disk, a quota, or a
/// limit on the size of files.
fn out_of_space(error: &io::Error) -> bool {
    let kind = error.kind();
    kind == io::ErrorKind::StorageFull
        || kind == io::ErrorKind::QuotaExceeded
        || kind == io::ErrorKind::FileTooLarge
}

fn no_space(name: &str) -> Status {
    Status::resource_exhausted(format!(
        "dataset {} could not be written: no storage space left",
        shown(name)
    ))
}

fn unreadable(name: &str, error: impl Display) -> Status {
    Status::data_loss(format!(
        "dataset {} is not a readable Parquet file: {}",
        shown(name),
        one_line(error)
    ))
}

/// A Parquet writer's error: the disk's fault, or the data's.
fn write_error(name: &str, error: ParquetError) -> Status {
    match error {
        ParquetError::External(error) => {
            eprintln!("dataset {}: {error}", shown(name));
            let first: &(dyn std::error::Error + 'static) = error.as_ref();
            let mut causes = std::iter::successors(Some(first), |e| e.source());
            if causes
                .any(|e| e.downcast_ref::<io::Error>().is_some_and(out_of_space))
            {
                return no_space(name);
            }
            Status::internal(format!(
                "dataset {} could not be written",
                shown(name)
            ))
        }
        other => Status::invalid_argument(format!(
            "dataset {} cannot be stored as Parquet: {}",
            shown(name),
            one_line(other)
        )),
    }
}

/// An upload the server could not decode, or that broke off with an error.
fn bad_upload(name: &str, error: FlightError) -> Status {
    match error {
        FlightError::Tonic(status) => *status,
        other => Status::invalid_argument(format!(
            "upload of {} failed: {}",
            shown(name),
            one_line(other)
        )),
    }
}
// ANCHOR_END: copy_dataset_errors
// ANCHOR_END: errors

// ANCHOR: repository
// ANCHOR: copy_repository
/// The folder that holds the datasets, one Parquet file each, named after
/// its dataset. Every path the server touches comes from here.
#[derive(Clone, Debug)]
pub struct Repository {
    dir: PathBuf,
}

impl Repository {
    /// The repository in `dir`, created if it does not exist. Files of
    /// uploads left unfinished by a server that was killed are removed.
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(".upload-") {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(Repository { dir })
    }

    /// The file of the dataset `name`, once the name is known to be safe.
    pub fn path(&self, name: &str) -> Result<PathBuf, Status> {
        check_name(name)?;
        Ok(self.dir.join(name))
    }
    // ANCHOR_END: copy_repository

    /// Opens the dataset `name` for reading. A dataset is a regular file:
    /// a symbolic link, which could point anywhere, is not one.
    pub async fn open(&self, name: &str) -> Result<tokio::fs::File, Status> {
        let path = self.path(name)?;
        match tokio::fs::symlink_metadata(&path).await {
            Ok(metadata) if metadata.is_file() => {}
            Ok(_) => return Err(not_found(name)),
            Err(e) => return Err(io_error(name, e)),
        }
        tokio::fs::File::open(&path)
            .await
            .map_err(|e| io_error(name, e))
    }

    /// The names of the datasets, sorted.
    pub async fn names(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        let mut entries = tokio::fs::read_dir(&self.dir).await?;
        while let Some(entry) = entries.next_entry().await? {
            if !entry.file_type().await?.is_file() {
                continue;
            }
            let name = entry.file_name();
            if let Some(name) =
                name.to_str().filter(|name| check_name(name).is_ok())
            {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }
    // ANCHOR_END: repository

    // ANCHOR: upload
    /// Starts storing the dataset `name`, whose batches have `schema`. They
    /// are written to a new hidden file, renamed over the dataset by
    /// [`Upload::finish`]; an upload dropped before that removes its file.
    pub fn upload(&self, name: &str, schema: SchemaRef) -> Result<Upload, Status> {
        let path = self.path(name)?;
        let (file, temp_path) = tempfile::Builder::new()
            .prefix(".upload-")
            .tempfile_in(&self.dir)
            .map_err(|e| io_error(name, e))?
            .into_parts();
        let properties = writer_properties();
        let mut writer = ArrowWriter::try_new(file, schema, Some(properties))
            .map_err(|e| write_error(name, e))?;

        // Encode on a thread of its own, while the next batches are decoded.
        let (batches, mut queue) = mpsc::unbounded_channel::<Group>();
        let name = name.to_string();
        let encoder = tokio::task::spawn_blocking({
            let name = name.clone();
            move || {
                // A group's room in the queue is given back once it is written.
                while let Some((group, _room)) = queue.blocking_recv() {
                    for batch in group {
                        writer.write(&batch).map_err(|e| write_error(&name, e))?;
                    }
                }
                Ok(writer)
            }
        });
        Ok(Upload {
            name,
            path,
            temp_path,
            group: Vec::new(),
            group_bytes: 0,
            room: Arc::new(Semaphore::new(QUEUED_KIB)),
            batches,
            encoder,
        })
    }
}
// ANCHOR_END: upload

// ANCHOR: writer_properties
/// The most bytes of a row group: the writer keeps one row group in
/// memory until it is complete, and the reader reads one at a time.
pub const ROW_GROUP_BYTES: usize = 32 * 1024 * 1024;

/// The batches that may wait for the client.
pub const QUEUED_BATCHES: usize = 4;

/// The KiB of batches that may wait for the encoder; a larger batch waits
/// alone.
pub const QUEUED_KIB: usize = 4 * 1024;

/// The bytes of the batches of an upload that go to the encoder together.
pub const GROUP_BYTES: usize = 1024 * 1024;

/// The largest dictionary of a column chunk, in bytes; beyond it, the
/// writer falls back to plain encoding for the rest of the row group.
pub const DICTIONARY_BYTES: usize = 64 * 1024;

/// How the server writes every dataset: Snappy, row groups of at most
/// [`ROW_GROUP_BYTES`], and dictionaries of at most [`DICTIONARY_BYTES`],
/// which hold up to 8192 distinct 64-bit values.
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
        .set_dictionary_page_size_limit(DICTIONARY_BYTES)
        .build()
}
// ANCHOR_END: writer_properties

// ANCHOR: upload_write
/// Batches for the encoder, with the room they take in its queue.
type Group = (Vec<RecordBatch>, OwnedSemaphorePermit);

/// A dataset being written, one batch at a time.
pub struct Upload {
    name: String,
    path: PathBuf,
    temp_path: TempPath,
    /// Batches not yet handed to the encoder, and their size.
    group: Vec<RecordBatch>,
    group_bytes: usize,
    /// Room in the queue, in KiB of batches.
    room: Arc<Semaphore>,
    batches: mpsc::UnboundedSender<Group>,
    /// The encoder's thread, which gives the writer back once `batches`
    /// closes; an upload dropped before its end drops it there.
    encoder: JoinHandle<Result<ArrowWriter<std::fs::File>, Status>>,
}

impl Upload {
    /// Hands `batch` to the encoder, in groups of [`GROUP_BYTES`]: each
    /// hand-over wakes a thread. Waits while [`QUEUED_KIB`] of batches
    /// wait for the encoder.
    pub async fn write(&mut self, batch: RecordBatch) -> Result<(), Status> {
        self.group_bytes += batch.get_array_memory_size();
        self.group.push(batch);
        if self.group_bytes < GROUP_BYTES {
            return Ok(());
        }
        self.hand_over().await
    }

    async fn hand_over(&mut self) -> Result<(), Status> {
        let group = std::mem::take(&mut self.group);
        let kib = self.group_bytes.div_ceil(1024).min(QUEUED_KIB);
        self.group_bytes = 0;
        let room = Arc::clone(&self.room).acquire_many_owned(kib as u32).await;
        let room = room.map_err(|_| Status::internal("the queue was closed"))?;
        match self.batches.send((group, room)) {
            Ok(()) => Ok(()),
            // The encoder has stopped, which it does only on an error.
            Err(_) => {
                Err(encoded(&mut self.encoder).await.err().unwrap_or_else(|| {
                    Status::internal("the encoder stopped before the end")
                }))
            }
        }
    }
    // ANCHOR_END: upload_write

    // ANCHOR: upload_finish
    /// Completes the file and renames it over the dataset, in one step:
    /// readers see the old dataset or the new one, never a part of either.
    pub async fn finish(mut self) -> Result<(), Status> {
        if !self.group.is_empty() {
            self.hand_over().await?;
        }
        drop(self.batches);
        let mut writer = encoded(&mut self.encoder).await?;
        let name = self.name.clone();
        blocking(move || {
            writer.finish().map_err(|e| write_error(&name, e))?;
            writer.inner().sync_all().map_err(|e| io_error(&name, e))
        })
        .await?;
        self.temp_path
            .persist(&self.path)
            .map_err(|e| io_error(&self.name, e.error))?;
        Ok(())
    }
}

// ANCHOR: copy_blocking
/// Runs blocking file work on tokio's threads for blocking work.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| Status::internal("a file task did not finish"))?
}
// ANCHOR_END: copy_blocking

/// What the encoder of an upload ended with.
async fn encoded(
    encoder: &mut JoinHandle<Result<ArrowWriter<std::fs::File>, Status>>,
) -> Result<ArrowWriter<std::fs::File>, Status> {
    encoder
        .await
        .map_err(|_| Status::internal("the encoder of an upload failed"))?
}
// ANCHOR_END: upload_finish

// ANCHOR: flight_info
/// A Flight service that stores each dataset as a Parquet file, and never
/// holds more than a row group of a dataset in memory.
pub struct StreamingParquetService {
    repository: Repository,
    /// The location of every endpoint: `None` for the server itself.
    advertise: Option<String>,
}

impl StreamingParquetService {
    pub fn new(repository: Repository) -> Self {
        StreamingParquetService {
            repository,
            advertise: None,
        }
    }

    /// Gives every endpoint the location `url`, a URL clients can reach
    /// the server at, rather than none.
    pub fn advertising(self, url: Option<String>) -> Self {
        StreamingParquetService {
            advertise: url,
            ..self
        }
    }

    /// Describes the dataset `name`: its schema, rows and size, and one
    /// endpoint whose ticket is the name, at `location`.
    async fn flight_info(
        &self,
        name: &str,
        location: Option<&str>,
    ) -> Result<FlightInfo, Status> {
        let file = self.repository.open(name).await?;
        let size = file.metadata().await.map_err(|e| io_error(name, e))?.len();
        let reader = ParquetRecordBatchStreamBuilder::new(file)
            .await
            .map_err(|e| unreadable(name, e))?;
        // ANCHOR: copy_describe_dataset
        let rows = reader.metadata().file_metadata().num_rows();

        let mut endpoint =
            FlightEndpoint::new().with_ticket(Ticket::new(name.to_string()));
        if let Some(location) = location {
            endpoint = endpoint.with_location(location);
        }
        let info = FlightInfo::new()
            .try_with_schema(reader.schema())
            .map_err(|e| unreadable(name, e))?
            .with_descriptor(FlightDescriptor::new_path(vec![name.to_string()]))
            .with_endpoint(endpoint)
            .with_total_records(rows)
            .with_total_bytes(i64::try_from(size).unwrap_or(i64::MAX));
        Ok(info)
        // ANCHOR_END: copy_describe_dataset
    }
}

// ANCHOR_END: flight_info

// ANCHOR: do_get
/// Rows per record batch read from a file and sent to a client.
pub const BATCH_ROWS: usize = 64 * 1024;
// ANCHOR_END: do_get

#[tonic::async_trait]
impl FlightService for StreamingParquetService {
    // ANCHOR: copy_stream_types
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoPutStream = BoxStream<'static, Result<PutResult, Status>>;
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;
    type ListActionsStream = BoxStream<'static, Result<ActionType, Status>>;
    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type DoExchangeStream = BoxStream<'static, Result<FlightData, Status>>;
    // ANCHOR_END: copy_stream_types

    // ANCHOR: list_flights
    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        let location = self.advertise.clone();
        let names = self.repository.names().await.map_err(|e| {
            eprintln!("cannot list the repository: {e}");
            Status::internal(format!("cannot list the datasets: {}", e.kind()))
        })?;
        let mut infos = Vec::new();
        for name in names {
            match self.flight_info(&name, location.as_deref()).await {
                Ok(info) => infos.push(Ok(info)),
                Err(status) => eprintln!("not listed: {}", status.message()),
            }
        }
        Ok(Response::new(stream::iter(infos).boxed()))
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let location = self.advertise.clone();
        let name = dataset_name(Some(request.get_ref()))?;
        let info = self.flight_info(&name, location.as_deref()).await?;
        Ok(Response::new(info))
    }
    // ANCHOR_END: list_flights

    // ANCHOR: do_put
    // ANCHOR: copy_do_put_start
    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        let end_of_stream = EndOfStream::of(&request)?;
        let mut messages = within_limit(request.into_inner());
        let first = messages
            .try_next()
            .await?
            .ok_or_else(|| Status::invalid_argument("the upload is empty"))?;
        let name = dataset_name(first.flight_descriptor.as_ref())?;
        check_name(&name)?;
        // ANCHOR_END: copy_do_put_start

        let mut messages = FlightDataDecoder::new(arrow_messages(first, messages))
            .map_err(|e| bad_upload(&name, e));
        let next = messages.try_next().await?;
        let Some(DecodedPayload::Schema(schema)) =
            next.map(|message| message.payload)
        else {
            return Err(Status::invalid_argument("the upload has no schema"));
        };

        // Write each batch as it arrives; no more than a row group waits.
        let mut upload = self.repository.upload(&name, schema)?;
        while let Some(message) = messages.try_next().await? {
            match message.payload {
                DecodedPayload::RecordBatch(batch) => upload.write(batch).await?,
                DecodedPayload::Schema(_) => {
                    return Err(Status::invalid_argument(
                        "the schema changed midway",
                    ));
                }
                DecodedPayload::None => {}
            }
        }
        end_of_stream.check()?;
        upload.finish().await?;
        Ok(Response::new(stream::empty().boxed()))
    }
    // ANCHOR_END: do_put

    // ANCHOR: do_get
    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let name = name_from_bytes(&request.get_ref().ticket)?;
        let file = self.repository.open(&name).await?.into_std().await;
        let opened = name.clone();
        let (schema, reader) = blocking(move || {
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| unreadable(&opened, e))?;
            let schema = reader.schema().clone();
            let reader = reader
                .with_batch_size(BATCH_ROWS)
                .build()
                .map_err(|e| unreadable(&opened, e))?;
            Ok((schema, reader))
        })
        .await?;

        // Decode on a thread of its own, while gRPC sends the batches before.
        let (batches, queue) = mpsc::channel(QUEUED_BATCHES);
        tokio::task::spawn_blocking(move || {
            for batch in reader {
                let batch =
                    batch.map_err(|e| FlightError::from(unreadable(&name, e)));
                let failed = batch.is_err();
                // A closed channel: the client has gone.
                if batches.blocking_send(batch).is_err() || failed {
                    break;
                }
            }
        });
        let batches = stream::unfold(queue, |mut queue| async move {
            queue.recv().await.map(|batch| (batch, queue))
        });
        let flight_data = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from);
        Ok(Response::new(flight_data.boxed()))
    }
    // ANCHOR_END: do_get

    // ANCHOR: actions
    // ANCHOR: copy_drop_dataset
    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        let drop_dataset = ActionType {
            r#type: "drop_dataset".to_string(),
            description: "Delete a dataset.".to_string(),
        };
        Ok(Response::new(stream::iter([Ok(drop_dataset)]).boxed()))
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let action = request.into_inner();
        if action.r#type != "drop_dataset" {
            return Err(Status::unimplemented(format!(
                "unknown action {}: the only action is drop_dataset",
                shown(&action.r#type)
            )));
        }
        let name = name_from_bytes(&action.body)?;
        let path = self.repository.path(&name)?;
        tokio::fs::remove_file(&path)
            .await
            .map_err(|e| io_error(&name, e))?;
        Ok(Response::new(stream::empty().boxed()))
    }
    // ANCHOR_END: copy_drop_dataset
    // ANCHOR_END: actions

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented("handshake is not offered"))
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented("poll_flight_info is not offered"))
    }

    async fn get_schema(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        Err(Status::unimplemented("get_schema is not offered"))
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("do_exchange is not offered"))
    }
}

// ANCHOR: do_put

// ANCHOR: copy_arrow_messages
/// The messages of an upload that carry Arrow data, `first` included. A
/// message without an IPC header carries only a descriptor or metadata.
fn arrow_messages(
    first: FlightData,
    rest: impl Stream<Item = Result<FlightData, Status>> + Send + 'static,
) -> impl Stream<Item = Result<FlightData, FlightError>> + Send + 'static {
    stream::once(future::ready(Ok(first)))
        .chain(rest)
        .try_filter(|data| future::ready(!data.data_header.is_empty()))
        .map_err(FlightError::from)
}
// ANCHOR_END: copy_arrow_messages
// ANCHOR_END: do_put

// ANCHOR: copy_upload_limit
/// The most one message of an upload may bring, as it comes and once its
/// buffers are decompressed: 64 MiB. Larger messages are refused.
pub const UPLOAD_MESSAGE_LIMIT: usize = 64 * 1024 * 1024;

/// The messages of an upload, each refused with `ResourceExhausted` if it
/// is over [`UPLOAD_MESSAGE_LIMIT`], before arrow-flight decodes it. The
/// service must be built with `max_decoding_message_size` of that limit.
pub fn within_limit(
    messages: impl Stream<Item = Result<FlightData, Status>> + Send + Unpin + 'static,
) -> impl Stream<Item = Result<FlightData, Status>> + Send + Unpin + 'static {
    messages.map(|message| {
        let message = message.map_err(too_large)?;
        let size = decompressed_size(&message);
        if size > UPLOAD_MESSAGE_LIMIT {
            return Err(Status::resource_exhausted(format!(
                "a compressed message of the upload would take {size} bytes \
                 once decompressed; the limit is {UPLOAD_MESSAGE_LIMIT} bytes \
                 (64 MiB): send smaller record batches"
            )));
        }
        Ok(message)
    })
}

/// tonic refuses a message over `max_decoding_message_size` with
/// `OutOfRange`; the client is told the limit, as `ResourceExhausted`.
fn too_large(status: Status) -> Status {
    let message = status.message();
    if status.code() == Code::OutOfRange && message.contains("length too large") {
        return Status::resource_exhausted(format!(
            "a message of the upload is larger than the limit of \
             {UPLOAD_MESSAGE_LIMIT} bytes (64 MiB): send smaller record batches"
        ));
    }
    status
}

/// The bytes that the buffers of a compressed record batch or dictionary
/// take once decompressed, as the 8 bytes before each buffer say. Messages
/// that are not compressed, or not valid, count 0: the decoder checks them.
fn decompressed_size(data: &FlightData) -> usize {
    let Ok(message) = arrow_ipc::root_as_message(&data.data_header) else {
        return 0;
    };
    let batch = message
        .header_as_record_batch()
        .or_else(|| message.header_as_dictionary_batch().and_then(|d| d.data()));
    let Some(batch) = batch.filter(|batch| batch.compression().is_some()) else {
        return 0;
    };
    let mut size = 0usize;
    for buffer in batch.buffers().iter().flatten() {
        let start = usize::try_from(buffer.offset()).unwrap_or(usize::MAX);
        let prefix = data.data_body.get(start..start.saturating_add(8));
        if let Some(prefix) = prefix.and_then(|p| <[u8; 8]>::try_from(p).ok()) {
            let length = i64::from_le_bytes(prefix);
            size = size.saturating_add(usize::try_from(length).unwrap_or(0));
        }
    }
    size
}
// ANCHOR_END: copy_upload_limit

// ANCHOR: end_of_stream
// ANCHOR: copy_end_of_stream
/// Whether the client ended its request stream itself. tonic reports a
/// stream that the client cancelled midway as a stream that ended normally,
/// so a service cannot tell a cut-off upload from a complete one without it.
#[derive(Clone, Debug, Default)]
pub struct EndOfStream(Arc<AtomicBool>);

impl EndOfStream {
    /// The mark of a call, put there by [`EndOfStreamLayer`].
    pub fn of<T>(request: &Request<T>) -> Result<Self, Status> {
        request.extensions().get().cloned().ok_or_else(|| {
            Status::internal(
                "uploads are refused: the server has no EndOfStreamLayer",
            )
        })
    }

    /// `Ok` if the client ended the stream, `Cancelled` if it broke it off.
    pub fn check(&self) -> Result<(), Status> {
        if self.0.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(Status::cancelled("the upload was cut off before its end"))
        }
    }
}

/// A tower layer that gives every call an [`EndOfStream`], set when the
/// request body reaches the client's end-of-stream mark, and not when it
/// breaks off with an error.
#[derive(Clone, Copy, Debug, Default)]
pub struct EndOfStreamLayer;

impl<S> Layer<S> for EndOfStreamLayer {
    type Service = WatchEndOfStream<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WatchEndOfStream { inner }
    }
}

#[derive(Clone, Debug)]
pub struct WatchEndOfStream<S> {
    inner: S,
}

impl<S> Service<http::Request<Body>> for WatchEndOfStream<S>
where
    S: Service<http::Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let end = EndOfStream::default();
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(end.clone());
        let body = Body::new(WatchedBody { body, end });
        self.inner.call(http::Request::from_parts(parts, body))
    }
}

struct WatchedBody {
    body: Body,
    end: EndOfStream,
}

impl http_body::Body for WatchedBody {
    type Data = <Body as http_body::Body>::Data;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Status>>> {
        let frame = ready!(Pin::new(&mut self.body).poll_frame(cx));
        if frame.is_none() {
            self.end.0.store(true, Ordering::Release);
        }
        Poll::Ready(frame)
    }
}
// ANCHOR_END: copy_end_of_stream
// ANCHOR_END: end_of_stream

// ANCHOR: copy_header_limit
/// The most a call's headers may take, counted as HTTP/2 counts them: each
/// header's name and value, and 32 bytes.
pub const MAX_HEADER_LIST_SIZE: usize = 16 * 1024;

/// The header list HTTP/2 decodes and passes on to `limit_headers`. Up to
/// four times as much, h2 answers HTTP 431 itself; beyond that, or sent in
/// more than 81 frames, it closes the connection.
pub const HTTP2_MAX_HEADER_LIST_SIZE: u32 = 1024 * 1024;

/// Refuses a call whose headers take more than `MAX_HEADER_LIST_SIZE`, with
/// `ResourceExhausted` as gRPC C++ servers do: the call fails alone, and the
/// other calls on its connection go on.
pub fn limit_headers(request: Request<()>) -> Result<Request<()>, Status> {
    let headers = request.metadata().as_ref().iter();
    let size: usize = headers
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum();
    if size > MAX_HEADER_LIST_SIZE {
        return Err(Status::resource_exhausted(format!(
            "the call's headers take {size} bytes, the limit is \
             {MAX_HEADER_LIST_SIZE} bytes"
        )));
    }
    Ok(request)
}
// ANCHOR_END: copy_header_limit

// ANCHOR: serve
// ANCHOR: copy_serve_repository
/// Serves the datasets of `repository` on `listener` until `shutdown`
/// completes.
pub async fn serve_repository(
    listener: TcpListener,
    repository: Repository,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    serve_advertised(listener, repository, None, shutdown).await
}

/// Serves the datasets of `repository` on `listener` until `shutdown`
/// completes, with `advertise` as the location of every endpoint.
pub async fn serve_advertised(
    listener: TcpListener,
    repository: Repository,
    advertise: Option<String>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    // ANCHOR_END: copy_serve_repository
    let service = StreamingParquetService::new(repository).advertising(advertise);
    // ANCHOR: copy_nodelay_server
    // Without TCP_NODELAY, the server's small flow-control frames wait for
    // the client's delayed acknowledgements, and uploads crawl.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    Server::builder()
        .http2_max_header_list_size(HTTP2_MAX_HEADER_LIST_SIZE)
        .layer(InterceptorLayer::new(limit_headers))
        .layer(EndOfStreamLayer)
        .add_service(
            FlightServiceServer::new(service)
                .max_decoding_message_size(UPLOAD_MESSAGE_LIMIT),
        )
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
    // ANCHOR_END: copy_nodelay_server
}

// ANCHOR: copy_serve_datasets
/// Serves the repository `datasets` in the current folder.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let repository = Repository::new("datasets")?;
    serve_repository(listener, repository, shutdown).await?;
    Ok(())
}
// ANCHOR_END: copy_serve_datasets
// ANCHOR_END: serve

// ANCHOR: main
// ANCHOR: copy_options
/// The command line: `[ADDR] [--repo DIR] [--advertise URL]`.
pub fn options(
    mut args: impl Iterator<Item = String>,
) -> Result<(String, Option<PathBuf>, Option<String>), String> {
    let mut addr = "127.0.0.1:8815".to_string();
    let (mut repo, mut advertise) = (None, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--repo" => {
                repo = Some(args.next().ok_or("--repo needs a folder")?.into())
            }
            "--advertise" => {
                advertise = Some(args.next().ok_or("--advertise needs a URL")?)
            }
            _ if arg.starts_with('-') => {
                return Err(format!("unknown option {arg}"));
            }
            _ => addr = arg,
        }
    }
    Ok((addr, repo, advertise))
}
// ANCHOR_END: copy_options

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let usage = "[ADDR] [--repo DIR] [--advertise URL]";
    let (addr, repo, advertise) = options(std::env::args().skip(1))
        .map_err(|e| format!("{e}; usage: streaming_parquet_server {usage}"))?;
    let repository = Repository::new(repo.unwrap_or_else(|| "datasets".into()))?;
    let listener = TcpListener::bind(&addr).await?;

    // Catch the signals before saying that the server is up.
    // ANCHOR: copy_stop_on_signal
    #[cfg(unix)]
    let mut interrupt = signal(SignalKind::interrupt())?;
    #[cfg(unix)]
    let mut terminate = signal(SignalKind::terminate())?;
    let stop = async move {
        #[cfg(unix)]
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    // ANCHOR_END: copy_stop_on_signal
    println!("Serving on grpc://{}", listener.local_addr()?);
    serve_advertised(listener, repository, advertise, stop).await?;
    Ok(())
}
// ANCHOR_END: main
