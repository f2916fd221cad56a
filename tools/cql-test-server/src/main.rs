//! `cql-test-server`: a dev-only CQL v4 server around the [`kassandra`] in-memory node.
//!
//! The store conformance tests need a real CQL protocol endpoint, and on machines without Docker
//! there is no ScyllaDB or Cassandra. `kassandra` is a library only, so this binary gives it a
//! socket: it reads native-protocol v4 frames, answers the handshake itself (STARTUP, OPTIONS,
//! REGISTER) and hands QUERY, PREPARE, EXECUTE and BATCH to one shared [`KassandraSession`].
//! docs/testing.md says what kassandra does and does not support.
//!
//! Usage: `cql-test-server [--listen 127.0.0.1:PORT]` (default `127.0.0.1:0`). The first line on
//! stdout is always `listening on ADDR` with the bound address, so PORT may be 0.
//!
//! Design choices, and why:
//! - **A thread per connection, blocking I/O.** Every request takes the same session lock, so an
//!   async runtime would buy no parallelism; plain threads keep the request path linear and make
//!   `catch_unwind` straightforward. A driver opens only a handful of connections.
//! - **The server must never die.** kassandra panics on much of what it does not support (UDTs,
//!   unknown types, some error paths), so each request is decoded, executed and encoded inside
//!   `catch_unwind`; a panic becomes a CQL `ServerError` frame, and the session lock's poison flag
//!   is cleared so later requests still run.
//! - **`frozen<` is refused up front.** kassandra's type parser recurses on `frozen<` without
//!   consuming input, which overflows the stack; a stack overflow aborts the process and cannot
//!   be caught, so such statements are answered with an `Invalid` error before kassandra sees them.
//! - Frames are read and written here rather than with kassandra's tokio codecs, so the binary
//!   needs nothing but kassandra itself; only the bodies are (de)serialized by kassandra.

use std::{
    any::Any,
    io::{self, BufReader, BufWriter, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    panic::{self, AssertUnwindSafe},
    sync::{Arc, Mutex, MutexGuard},
    thread,
};

use kassandra::{
    error::DbError,
    frame::{
        request::{Request, RequestOpcode},
        response::{error::Error, Response},
        FrameFlags,
    },
    KassandraSession,
};

/// The single in-memory node shared by all connections.
type Shared = Arc<Mutex<KassandraSession>>;

/// Largest frame body accepted: the protocol's own limit (256 MiB).
const MAX_BODY: usize = 256 * 1024 * 1024;
const HEADER_LEN: usize = 9;
const PROTOCOL_V4: u8 = 0x04;
const RESPONSE_V4: u8 = 0x84;

fn main() {
    let listen = match parse_args() {
        Ok(addr) => addr,
        Err(msg) => {
            eprintln!("cql-test-server: {msg}");
            eprintln!("usage: cql-test-server [--listen 127.0.0.1:PORT]");
            std::process::exit(2);
        }
    };
    // One line per panic instead of the default message plus backtrace: panics are expected
    // (unsupported CQL) and are turned into error frames.
    panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "cql-test-server: kassandra panicked at {location}: {}",
            panic_message(info.payload())
        );
    }));

    let listener = TcpListener::bind(listen).unwrap_or_else(|e| {
        eprintln!("cql-test-server: cannot listen on {listen}: {e}");
        std::process::exit(1);
    });
    let bound = listener.local_addr().expect("bound address");
    println!("listening on {bound}");
    io::stdout().flush().ok();

    let session: Shared = Arc::new(Mutex::new(KassandraSession::new()));
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let session = Arc::clone(&session);
                thread::spawn(move || {
                    let peer = stream.peer_addr().ok();
                    if let Err(e) = serve_connection(stream, &session) {
                        if !is_disconnect(&e) {
                            eprintln!("cql-test-server: connection {peer:?}: {e}");
                        }
                    }
                });
            }
            Err(e) => eprintln!("cql-test-server: accept failed: {e}"),
        }
    }
}

fn parse_args() -> Result<SocketAddr, String> {
    let mut listen: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "--listen" => args.next().ok_or("--listen needs an address")?,
            other if other.starts_with("--listen=") => other["--listen=".len()..].to_owned(),
            "-h" | "--help" => {
                println!("usage: cql-test-server [--listen 127.0.0.1:PORT]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        };
        listen = value
            .parse()
            .map_err(|e| format!("bad --listen address {value:?}: {e}"))?;
    }
    Ok(listen)
}

fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// Reads request frames until the client goes away, answering each in order.
///
/// Drivers pipeline requests on one connection (distinguished by stream id); answering them in
/// arrival order is allowed. Responses are buffered and flushed once no further request is
/// already waiting in the read buffer.
fn serve_connection(stream: TcpStream, session: &Shared) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::with_capacity(64 * 1024, stream.try_clone()?);
    let mut writer = BufWriter::with_capacity(64 * 1024, stream);
    let mut header = [0u8; HEADER_LEN];
    loop {
        match reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let version = header[0];
        let flags = header[1];
        let stream_id = i16::from_be_bytes([header[2], header[3]]);
        let opcode = header[4];
        let len = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) as usize;
        if len > MAX_BODY {
            let err = error(
                DbError::ProtocolError,
                format!("frame body of {len} bytes is too large"),
            );
            writer.write_all(&encode(err, stream_id))?;
            writer.flush()?;
            return Ok(());
        }
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body)?;

        let response = handle(version, flags, opcode, &body, session);
        writer.write_all(&encode(response, stream_id))?;
        if reader.buffer().is_empty() {
            writer.flush()?;
        }
    }
}

fn error(kind: DbError, reason: impl ToString) -> Response {
    Response::Error(Error::new(kind, reason))
}

/// Turns one request frame into one response, never panicking.
fn handle(version: u8, flags: u8, opcode: u8, body: &[u8], session: &Shared) -> Response {
    if version != PROTOCOL_V4 {
        // The message drivers look for to downgrade; we only speak v4.
        return Response::unsupported_version();
    }
    let flags = FrameFlags::from_bits_truncate(flags);
    if flags.intersects(FrameFlags::COMPRESSION | FrameFlags::CUSTOM_PAYLOAD) {
        return error(
            DbError::ProtocolError,
            "compression and custom payloads are not supported",
        );
    }
    let Ok(opcode) = RequestOpcode::try_from(opcode) else {
        return error(
            DbError::ProtocolError,
            format!("unknown opcode {opcode:#04x}"),
        );
    };
    if opcode == RequestOpcode::AuthResponse {
        return error(DbError::ProtocolError, "authentication is not supported");
    }
    if let Some(text) = statement_texts(opcode, body)
        .into_iter()
        .find(|t| mentions_frozen(t))
    {
        return error(
            DbError::Invalid,
            format!("cql-test-server: frozen<...> types are not supported by kassandra: {text}"),
        );
    }

    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        let request = match Request::deserialize(opcode, body, flags) {
            Ok(request) => request,
            Err(e) => return Response::Error(e),
        };
        let result = match request {
            Request::StartUp(_) => return Response::Ready,
            Request::Options => return Response::options(),
            // Accepted but no events are ever pushed (single node, schema changes are local).
            Request::Register { .. } => return Response::Ready,
            Request::AuthResponse => {
                return error(DbError::ProtocolError, "authentication is not supported")
            }
            Request::Query(query) => lock(session).process(query),
            Request::Prepare(query) => lock(session).prepare(query),
            Request::Execute(execute) => lock(session).execute(execute),
            Request::Batch(batch) => lock(session).process_batch(batch),
        };
        match result {
            Ok(result) => Response::Result(result),
            Err(e) => Response::Error(e),
        }
    }));
    outcome.unwrap_or_else(|payload| {
        error(
            DbError::ServerError,
            format!(
                "cql-test-server: kassandra cannot handle this request ({})",
                panic_message(&*payload)
            ),
        )
    })
}

/// Locks the session, clearing the poison a panicking request left behind.
fn lock(session: &Shared) -> MutexGuard<'_, KassandraSession> {
    session.lock().unwrap_or_else(|poisoned| {
        session.clear_poison();
        poisoned.into_inner()
    })
}

/// Serializes a response frame; if kassandra panics while serializing, a `ServerError` is sent
/// instead.
fn encode(response: Response, stream_id: i16) -> Vec<u8> {
    let frame = |response: &Response| {
        let mut buf = vec![0u8; HEADER_LEN];
        let mut flags = FrameFlags::empty();
        match response.serialize(&mut buf, &mut flags) {
            Ok(()) => {
                let len = (buf.len() - HEADER_LEN) as u32;
                buf[0] = RESPONSE_V4;
                buf[1] = flags.bits();
                buf[2..4].copy_from_slice(&stream_id.to_be_bytes());
                buf[4] = response.opcode();
                buf[5..9].copy_from_slice(&len.to_be_bytes());
                Ok(buf)
            }
            Err(e) => Err(e.to_string()),
        }
    };
    let reason = match panic::catch_unwind(AssertUnwindSafe(|| frame(&response))) {
        Ok(Ok(buf)) => return buf,
        Ok(Err(e)) => e,
        Err(payload) => panic_message(&*payload),
    };
    let fallback = error(
        DbError::ServerError,
        format!("cql-test-server: cannot encode the response: {reason}"),
    );
    frame(&fallback).expect("an error frame always serializes")
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic".to_owned()
    }
}

/// True when the statement uses a `frozen<...>` type (any case, any spacing before `<`).
fn mentions_frozen(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower
        .match_indices("frozen")
        .any(|(at, word)| lower[at + word.len()..].trim_start().starts_with('<'))
}

/// The CQL texts carried by a QUERY, PREPARE or BATCH body, read with a minimal walker over the
/// protocol layout (malformed bodies yield what was read so far; kassandra reports the error).
fn statement_texts(opcode: RequestOpcode, body: &[u8]) -> Vec<String> {
    let mut cur = Cursor(body);
    let mut texts = Vec::new();
    match opcode {
        RequestOpcode::Query | RequestOpcode::Prepare => texts.extend(cur.long_string()),
        RequestOpcode::Batch => {
            let _batch_type = cur.take(1);
            let count = cur.u16().unwrap_or(0);
            for _ in 0..count {
                let kind = cur.take(1).map(|k| k[0]);
                match kind {
                    Some(0) => match cur.long_string() {
                        Some(text) => texts.push(text),
                        None => break,
                    },
                    Some(1) => {
                        let Some(n) = cur.u16() else { break };
                        if cur.take(n as usize).is_none() {
                            break;
                        }
                    }
                    _ => break,
                }
                let Some(values) = cur.u16() else { break };
                for _ in 0..values {
                    // [bytes]: int length, negative means null/unset with no content.
                    let Some(n) = cur.i32() else { break };
                    if n > 0 && cur.take(n as usize).is_none() {
                        break;
                    }
                }
            }
        }
        _ => {}
    }
    texts
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn long_string(&mut self) -> Option<String> {
        let n = self.i32()?;
        let bytes = self.take(usize::try_from(n).ok()?)?;
        Some(String::from_utf8_lossy(bytes).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_is_detected_in_any_spelling() {
        assert!(mentions_frozen("CREATE TABLE t (a frozen<list<int>>)"));
        assert!(mentions_frozen("create table t (a FROZEN <set<text>>)"));
        assert!(!mentions_frozen("select frozen_at from t"));
        assert!(!mentions_frozen("select * from frozen"));
    }

    #[test]
    fn batch_texts_are_extracted() {
        let mut body = vec![0u8]; // logged
        body.extend(2u16.to_be_bytes());
        // a query statement with one value
        body.push(0);
        let q = b"insert into k.t (a) values (?)";
        body.extend((q.len() as i32).to_be_bytes());
        body.extend(q);
        body.extend(1u16.to_be_bytes());
        body.extend(3i32.to_be_bytes());
        body.extend(b"abc");
        // a prepared statement with a null value
        body.push(1);
        body.extend(2u16.to_be_bytes());
        body.extend([7, 7]);
        body.extend(1u16.to_be_bytes());
        body.extend((-1i32).to_be_bytes());
        let texts = statement_texts(RequestOpcode::Batch, &body);
        assert_eq!(texts, vec!["insert into k.t (a) values (?)".to_owned()]);
    }
}
