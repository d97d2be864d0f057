// ANCHOR: uses
use std::fmt::Display;
use std::fs::File;
use std::future::Future;
use std::io::{self, BufWriter, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use arrow_array::RecordBatch;
use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::error::FlightError;
use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor,
    FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, PollInfo,
    PutResult, SchemaResult, Ticket,
};
use arrow_ipc::reader::read_footer_length;
use arrow_ipc::writer::FileWriter;
use arrow_ipc::{MessageHeader, root_as_footer, root_as_message};
use arrow_schema::{ArrowError, SchemaRef};
use arrow_select::concat::concat_batches;
use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt, TryStreamExt, future};
use http_body::Frame;
use tempfile::TempPath;
use tokio::net::TcpListener;
#[cfg(unix)]
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
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
/// A name as messages show it: quoted, and no longer than 64 characters.
pub fn shown(name: &str) -> String {
    match name.char_indices().nth(64) {
        Some((end, _)) => format!("{:?}...", &name[..end]),
        None => format!("{name:?}"),
    }
}

fn not_found(name: &str) -> Status {
    Status::not_found(format!("dataset {} not found", shown(name)))
}

/// An I/O error as the client sees it: its kind, never a path; the server's
/// log gets the whole error.
fn io_error(name: &str, error: io::Error) -> Status {
    match error.kind() {
        io::ErrorKind::NotFound => not_found(name),
        kind => {
            eprintln!("dataset {}: {error}", shown(name));
            Status::internal(format!("dataset {}: {kind}", shown(name)))
        }
    }
}

/// The first line of an error's text: some errors carry several.
fn first_line(error: impl Display) -> String {
    let text = error.to_string();
    text.lines().next().unwrap_or_default().to_string()
}

/// A stored file that cannot be served as it is.
fn damaged(name: &str, problem: impl Display) -> Status {
    Status::data_loss(format!(
        "dataset {} is not a readable Arrow IPC file: {problem}",
        shown(name)
    ))
}

/// An upload the server could not decode or store.
fn bad_upload(name: &str, error: FlightError) -> Status {
    if let FlightError::Tonic(status) = error {
        return *status;
    }
    let problem = first_line(error);
    Status::invalid_argument(format!("upload of {} failed: {problem}", shown(name)))
}

/// An error of the IPC writer: the disk's fault, or the data's.
fn write_error(name: &str, error: ArrowError) -> Status {
    match error {
        ArrowError::IoError(_, error) => io_error(name, error),
        other => bad_upload(name, FlightError::Arrow(other)),
    }
}
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
    pub async fn open(&self, name: &str) -> Result<File, Status> {
        let path = self.path(name)?;
        match tokio::fs::symlink_metadata(&path).await {
            Ok(metadata) if metadata.is_file() => {}
            Ok(_) => return Err(not_found(name)),
            Err(e) => return Err(io_error(name, e)),
        }
        let file = tokio::fs::File::open(&path).await;
        Ok(file.map_err(|e| io_error(name, e))?.into_std().await)
    }

    /// The names of the datasets, sorted.
    pub async fn names(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        let mut entries = tokio::fs::read_dir(&self.dir).await?;
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().await?.is_file() && check_name(&name).is_ok() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
    // ANCHOR_END: repository

    // ANCHOR: upload
    /// Starts storing the dataset `name`, whose batches have `schema`, in a
    /// hidden file that [`Upload::finish`] renames over the dataset; an
    /// upload dropped before that removes its file.
    pub fn upload(&self, name: &str, schema: SchemaRef) -> Result<Upload, Status> {
        let path = self.path(name)?;
        let (file, temp_path) = tempfile::Builder::new()
            .prefix(".upload-")
            .tempfile_in(&self.dir)
            .map_err(|e| io_error(name, e))?
            .into_parts();
        let mut writer = FileWriter::try_new_buffered(file, &schema)
            .map_err(|e| write_error(name, e))?;
        // The writer runs on a thread of its own and gets whole batches.
        let (sender, mut batches) = mpsc::channel::<RecordBatch>(QUEUED_MESSAGES);
        let writer_name = name.to_string();
        let writing = tokio::task::spawn_blocking(move || {
            while let Some(batch) = batches.blocking_recv() {
                writer
                    .write(&batch)
                    .map_err(|e| write_error(&writer_name, e))?;
            }
            Ok(writer)
        });
        Ok(Upload {
            name: name.to_string(),
            path,
            temp_path,
            schema,
            gathered: Vec::new(),
            gathered_bytes: 0,
            sender,
            writing,
        })
    }
}
// ANCHOR_END: upload

// ANCHOR: gather
/// Uploaded batches are gathered into batches of up to this many bytes
/// before they are stored, so that a download sends messages of about this
/// size however small the batches of the upload were.
pub const STORED_BATCH_BYTES: usize = 512 * 1024;

/// The bytes of the buffers of `batch`, as an IPC message carries them.
pub fn stored_bytes(batch: &RecordBatch) -> usize {
    let columns = batch.columns().iter();
    columns
        .filter_map(|c| c.to_data().get_slice_memory_size().ok())
        .sum()
}

/// The messages that may wait between a thread and an async task.
pub const QUEUED_MESSAGES: usize = 4;
// ANCHOR_END: gather

/// A dataset being stored, a batch at a time.
pub struct Upload {
    name: String,
    path: PathBuf,
    temp_path: TempPath,
    schema: SchemaRef,
    gathered: Vec<RecordBatch>,
    gathered_bytes: usize,
    sender: mpsc::Sender<RecordBatch>,
    writing: JoinHandle<Result<FileWriter<BufWriter<File>>, Status>>,
}

impl Upload {
    // ANCHOR: gather
    /// Adds `batch` to the batch being gathered, which goes to the writer
    /// first if `batch` would make it larger than [`STORED_BATCH_BYTES`].
    pub async fn write(&mut self, batch: RecordBatch) -> Result<(), Status> {
        let bytes = stored_bytes(&batch);
        if self.gathered_bytes + bytes > STORED_BATCH_BYTES {
            self.send_gathered().await?;
        }
        self.gathered_bytes += bytes;
        self.gathered.push(batch);
        Ok(())
    }

    async fn send_gathered(&mut self) -> Result<(), Status> {
        if self.gathered.is_empty() {
            return Ok(());
        }
        let batch = concat_batches(&self.schema, &self.gathered)
            .map_err(|e| write_error(&self.name, e))?;
        self.gathered.clear();
        self.gathered_bytes = 0;
        if self.sender.send(batch).await.is_err() {
            // The writer stops early only on an error: that is the answer.
            return Err(self.writer().await.err().unwrap_or_else(|| {
                Status::internal("the writer of an upload stopped early")
            }));
        }
        Ok(())
    }

    // ANCHOR_END: gather
    async fn writer(&mut self) -> Result<FileWriter<BufWriter<File>>, Status> {
        let finished = (&mut self.writing).await;
        finished.map_err(|_| Status::internal("the writer of an upload failed"))?
    }

    /// Writes the footer, flushes the file to disk and renames it over the
    /// dataset: readers see the old dataset or the new one, never a part.
    pub async fn finish(mut self) -> Result<(), Status> {
        self.send_gathered().await?;
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.sender, closed));
        let mut writer = self.writer().await?;
        let name = self.name.clone();
        blocking(move || {
            writer.finish().map_err(|e| write_error(&name, e))?;
            let buffered =
                writer.into_inner().map_err(|e| write_error(&name, e))?;
            let file = buffered
                .into_inner()
                .map_err(|e| io_error(&name, e.into_error()))?;
            file.sync_all().map_err(|e| io_error(&name, e))
        })
        .await?;
        let Upload {
            name,
            path,
            temp_path,
            ..
        } = self;
        temp_path
            .persist(&path)
            .map_err(|e| io_error(&name, e.error))?;
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

// ANCHOR: stored_file
/// The first bytes of an Arrow IPC file, and its last.
const MAGIC: &[u8] = b"ARROW1";
/// What precedes the length of each message since Arrow 0.15.
const CONTINUATION: [u8; 4] = [0xff; 4];

/// Where a message lies in a file: its flatbuffer header, then its body.
#[derive(Clone, Copy, Debug)]
struct Place {
    header: u64,
    header_len: usize,
    body_len: usize,
}

/// A stored Arrow IPC file, checked from end to end: where its messages
/// lie, in the order a stream sends them, and what they hold.
pub struct StoredFile {
    file: File,
    /// The schema's message, then the dictionaries, then the record batches.
    messages: Vec<Place>,
    pub rows: i64,
    pub bytes: u64,
}

impl StoredFile {
    /// Reads the footer of `file` and the header of every message it lists:
    /// a file cut short, or not Arrow IPC at all, is refused here, before
    /// anything is sent. The problem is said in words a client can show.
    pub fn open(file: File) -> Result<Self, String> {
        let len = file.metadata().map_err(|e| e.kind().to_string())?.len();
        let mut start = [0u8; 8];
        read_at(&file, &mut start, 0, len)?;
        if &start[..6] != MAGIC {
            return Err("it does not start with ARROW1".to_string());
        }
        let mut end = [0u8; 10];
        read_at(&file, &mut end, len.saturating_sub(10), len)?;
        let footer_len = read_footer_length(end)
            .map_err(|_| "it does not end with ARROW1; it may be cut short")?;
        let footer_start = (len - 10)
            .checked_sub(footer_len as u64)
            .filter(|&at| at >= 8)
            .ok_or("its footer is longer than the file")?;
        let mut footer = vec![0u8; footer_len];
        read_at(&file, &mut footer, footer_start, len)?;
        let footer = root_as_footer(&footer)
            .map_err(|e| format!("its footer: {}", first_line(e)))?;
        // ANCHOR_END: stored_file

        // ANCHOR: stored_messages
        // Writers pad the magic with zeros: to 8 bytes, or to 64.
        let mut at = 8;
        let mut word = [0u8; 4];
        while at < 64 && read_at(&file, &mut word, at, footer_start).is_ok() {
            if word != [0; 4] {
                break;
            }
            at += 8;
        }
        let (schema, header) = read_header(&file, at, footer_start)?;
        if header != MessageHeader::Schema {
            return Err("its first message is not a schema".to_string());
        }
        let mut stored = StoredFile {
            file,
            messages: vec![schema],
            rows: 0,
            bytes: 0,
        };
        let dictionaries = footer.dictionaries().into_iter().flatten();
        let batches = footer.recordBatches().into_iter().flatten();
        for (block, expected) in dictionaries
            .map(|block| (block, MessageHeader::DictionaryBatch))
            .chain(batches.map(|block| (block, MessageHeader::RecordBatch)))
        {
            let offset = u64::try_from(block.offset())
                .map_err(|_| "a message has a negative offset")?;
            let (place, header) = read_header(&stored.file, offset, footer_start)?;
            if header != expected || place.body_len as i64 != block.bodyLength() {
                return Err(format!(
                    "the message at byte {offset} is not the one its footer lists"
                ));
            }
            stored.bytes += place.body_len as u64;
            stored.messages.push(place);
        }
        stored.rows = stored.count_rows()?;
        Ok(stored)
    }
    // ANCHOR_END: stored_messages

    fn count_rows(&self) -> Result<i64, String> {
        let mut rows = 0;
        for place in &self.messages {
            let header = self.read_bytes(place.header, place.header_len)?;
            let message = root_as_message(&header).map_err(first_line)?;
            if let Some(batch) = message.header_as_record_batch() {
                rows += batch.length();
            }
        }
        Ok(rows)
    }

    fn read_bytes(&self, at: u64, len: usize) -> Result<Vec<u8>, String> {
        let mut buffer = vec![0u8; len];
        read_exact_at(&self.file, &mut buffer, at)
            .map_err(|e| format!("reading byte {at}: {}", e.kind()))?;
        Ok(buffer)
    }

    // ANCHOR: messages
    /// The file's messages as Flight sends them, each read when asked for:
    /// the flatbuffer header as `data_header` and the body as `data_body`,
    /// the bytes as they are stored.
    pub fn messages(self) -> impl Iterator<Item = Result<FlightData, String>> {
        let StoredFile { file, messages, .. } = self;
        messages.into_iter().map(move |place| {
            let mut header = vec![0u8; place.header_len];
            let mut body = vec![0u8; place.body_len];
            let body_at = place.header + place.header_len as u64;
            read_exact_at(&file, &mut header, place.header)
                .and_then(|()| read_exact_at(&file, &mut body, body_at))
                .map_err(|e| {
                    format!("reading byte {}: {}", place.header, e.kind())
                })?;
            Ok(FlightData::new()
                .with_data_header(header)
                .with_data_body(body))
        })
    }
    // ANCHOR_END: messages

    /// The schema's message, as a `FlightInfo` carries it: encapsulated.
    pub fn schema_message(&self) -> Result<Vec<u8>, String> {
        let place = self.messages[0];
        let header = self.read_bytes(place.header, place.header_len)?;
        let len = i32::try_from(header.len()).map_err(|e| e.to_string())?;
        Ok([&CONTINUATION[..], &len.to_le_bytes(), &header].concat())
    }
}

// ANCHOR: read_header
/// Reads the length and flatbuffer header of the message at `at`, which
/// must end with its body before `end`, and checks that the header is one.
fn read_header(
    file: &File,
    at: u64,
    end: u64,
) -> Result<(Place, MessageHeader), String> {
    let mut prefix = [0u8; 8];
    read_at(file, &mut prefix, at, end)?;
    // Files of Arrow before 0.15 have no continuation marker.
    let (len, header) = match prefix[..4] == CONTINUATION {
        true => (&prefix[4..], at + 8),
        false => (&prefix[..4], at + 4),
    };
    let len = i32::from_le_bytes([len[0], len[1], len[2], len[3]]);
    let header_len = usize::try_from(len)
        .map_err(|_| format!("the message at byte {at} has a negative length"))?;
    if header + header_len as u64 > end {
        return Err(format!("the message at byte {at} runs past the end"));
    }
    let mut bytes = vec![0u8; header_len];
    read_at(file, &mut bytes, header, end)?;
    let message = root_as_message(&bytes).map_err(|e| {
        format!("the message at byte {at} is damaged: {}", first_line(e))
    })?;
    let body_len = usize::try_from(message.bodyLength())
        .map_err(|_| format!("the message at byte {at} has a negative body"))?;
    let body_end = header + header_len as u64 + body_len as u64;
    if body_end > end {
        return Err(format!("the message at byte {at} runs past the end"));
    }
    let place = Place {
        header,
        header_len,
        body_len,
    };
    Ok((place, message.header_type()))
}

/// Fills `buffer` from byte `at` of `file`, which must not pass `end`.
fn read_at(
    file: &File,
    buffer: &mut [u8],
    at: u64,
    end: u64,
) -> Result<(), String> {
    if at + buffer.len() as u64 > end {
        return Err(format!("it is cut short: {end} bytes"));
    }
    read_exact_at(file, buffer, at)
        .map_err(|e| format!("reading byte {at}: {}", e.kind()))
}

/// Fills `buffer` from byte `at` of `file`, on every platform.
fn read_exact_at(mut file: &File, buffer: &mut [u8], at: u64) -> io::Result<()> {
    file.seek(SeekFrom::Start(at))?;
    file.read_exact(buffer)
}
// ANCHOR_END: read_header

// ANCHOR: service
/// A Flight service that stores each dataset as an Arrow IPC file and
/// sends the stored messages as they are.
pub struct StoredArrowService {
    repository: Repository,
}

impl StoredArrowService {
    pub fn new(repository: Repository) -> Self {
        StoredArrowService { repository }
    }

    /// Opens and checks the dataset `name`, on a thread for blocking work.
    async fn stored(&self, name: &str) -> Result<StoredFile, Status> {
        let file = self.repository.open(name).await?;
        let name = name.to_string();
        blocking(move || StoredFile::open(file).map_err(|e| damaged(&name, e)))
            .await
    }

    /// Describes the dataset `name`: its schema as stored, its rows and
    /// bytes, and one endpoint whose ticket is the name.
    async fn flight_info(&self, name: &str) -> Result<FlightInfo, Status> {
        let stored = self.stored(name).await?;
        let schema = stored.schema_message().map_err(|e| damaged(name, e))?;
        let ticket = Ticket::new(name.to_string());
        let mut info = FlightInfo::new()
            .with_descriptor(FlightDescriptor::new_path(vec![name.to_string()]))
            .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
            .with_total_records(stored.rows)
            .with_total_bytes(i64::try_from(stored.bytes).unwrap_or(i64::MAX));
        info.schema = schema.into();
        Ok(info)
    }
}
// ANCHOR_END: service

#[tonic::async_trait]
impl FlightService for StoredArrowService {
    // ANCHOR: copy_stream_types
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoPutStream = BoxStream<'static, Result<PutResult, Status>>;
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;
    type ListActionsStream = BoxStream<'static, Result<ActionType, Status>>;
    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type DoExchangeStream = BoxStream<'static, Result<FlightData, Status>>;
    // ANCHOR_END: copy_stream_types

    // ANCHOR: do_get
    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let name = name_from_bytes(&request.get_ref().ticket)?;
        let stored = self.stored(&name).await?;
        // Read on a thread of its own, a few messages ahead of gRPC.
        let (sender, receiver) = mpsc::channel(QUEUED_MESSAGES);
        tokio::task::spawn_blocking(move || {
            for message in stored.messages() {
                let message = message.map_err(|e| damaged(&name, e));
                let last = message.is_err();
                // A send fails once the client has gone.
                if sender.blocking_send(message).is_err() || last {
                    return;
                }
            }
        });
        let messages = stream::unfold(receiver, |mut receiver| async move {
            let message = receiver.recv().await?;
            Some((message, receiver))
        });
        Ok(Response::new(messages.boxed()))
    }
    // ANCHOR_END: do_get

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
        let Some(DecodedPayload::Schema(schema)) =
            messages.try_next().await?.map(|message| message.payload)
        else {
            return Err(Status::invalid_argument("the upload has no schema"));
        };
        let mut upload = self.repository.upload(&name, schema)?;
        while let Some(message) = messages.try_next().await? {
            match message.payload {
                DecodedPayload::RecordBatch(batch) => upload.write(batch).await?,
                DecodedPayload::None => {}
                DecodedPayload::Schema(_) => {
                    let problem = "a second schema came midway";
                    return Err(Status::invalid_argument(problem));
                }
            }
        }
        end_of_stream.check()?;
        upload.finish().await?;
        Ok(Response::new(stream::empty().boxed()))
    }
    // ANCHOR_END: do_put

    // ANCHOR: list_flights
    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        let names = self.repository.names().await.map_err(|e| {
            eprintln!("cannot list the repository: {e}");
            Status::internal(format!("cannot list the datasets: {}", e.kind()))
        })?;
        let mut infos = Vec::new();
        for name in names {
            match self.flight_info(&name).await {
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
        let name = dataset_name(Some(request.get_ref()))?;
        Ok(Response::new(self.flight_info(&name).await?))
    }
    // ANCHOR_END: list_flights

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
/// Serves the datasets of `repository` on `listener` until `shutdown`
/// completes.
pub async fn serve_repository(
    listener: TcpListener,
    repository: Repository,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let service = StoredArrowService::new(repository);
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
// ANCHOR_END: serve

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

// ANCHOR: options
/// The command line: `[ADDR] [--repo DIR]`.
pub fn options(
    mut args: impl Iterator<Item = String>,
) -> Result<(String, Option<PathBuf>), String> {
    let mut addr = "127.0.0.1:8815".to_string();
    let mut repo = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--repo" => {
                repo = Some(args.next().ok_or("--repo needs a folder")?.into())
            }
            _ if arg.starts_with('-') => {
                return Err(format!("unknown option {arg}"));
            }
            _ => addr = arg,
        }
    }
    Ok((addr, repo))
}
// ANCHOR_END: options

// ANCHOR: main
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (addr, repo) = options(std::env::args().skip(1)).map_err(|e| {
        format!("{e}; usage: stored_arrow_server [ADDR] [--repo DIR]")
    })?;
    let repository = repo.map(Repository::new).transpose()?;
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
    match repository {
        Some(repository) => serve_repository(listener, repository, stop).await?,
        None => serve(listener, stop).await?,
    }
    Ok(())
}
// ANCHOR_END: main
