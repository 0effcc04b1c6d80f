//! The little HTTP/1.1 the UI needs, on std's TCP: one request per connection, headers and body
//! bounded before anything is allocated for them, a deadline on every read, so no client can
//! make the server allocate, wait or crash at will.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The most a request's line and headers may take together.
const MAX_HEAD: usize = 16 * 1024;
/// How long a client may take to send its request.
const READ_DEADLINE: Duration = Duration::from_secs(10);

/// A request as read.
pub(crate) struct Request {
    pub method: String,
    /// The path and query as sent.
    pub target: String,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// A header's value (names compare without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Why a request could not be read: the status to answer with, and why.
pub(crate) struct Refused(pub u16, pub String);

/// Reads one request from `stream`, its body at most `max_body` bytes.
pub(crate) fn read_request(stream: &TcpStream, max_body: usize) -> Result<Request, Refused> {
    stream.set_read_timeout(Some(READ_DEADLINE)).ok();
    let mut reader = BufReader::new(stream.take(MAX_HEAD as u64));
    let mut line = String::new();
    let bad = |message: &str| Refused(400, message.to_owned());
    reader.read_line(&mut line).map_err(|_| bad("the request line could not be read"))?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("a request line is METHOD TARGET HTTP/1.1"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(Refused(505, format!("{version} is not spoken here; HTTP/1.1 is")));
    }
    let (method, target) = (method.to_owned(), target.to_owned());
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        let read = reader.read_line(&mut header).map_err(|_| bad("the headers could not be read"))?;
        if read == 0 || !header.ends_with('\n') {
            return Err(Refused(431, format!("the request's head is over {MAX_HEAD} bytes or cut short")));
        }
        let header = header.trim_end_matches(['\r', '\n']);
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').ok_or_else(|| bad("a header is NAME: VALUE"))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let request = Request { method, target, headers, body: Vec::new() };
    if request.header("Transfer-Encoding").is_some() {
        return Err(Refused(411, "send a Content-Length, not a chunked body".into()));
    }
    let length = match request.header("Content-Length") {
        None => 0,
        Some(text) => text.parse::<u64>().map_err(|_| bad("Content-Length is not a number"))?,
    };
    if length > max_body as u64 {
        return Err(Refused(413, format!("the body is larger than {max_body} bytes")));
    }
    // What the head's reader buffered beyond the head is the body's start.
    let mut body = Vec::with_capacity(length as usize);
    let buffered = reader.buffer().len().min(length as usize);
    body.extend_from_slice(&reader.buffer()[..buffered]);
    reader.consume(buffered);
    let mut rest = stream.take(length - buffered as u64);
    rest.read_to_end(&mut body).map_err(|_| bad("the body could not be read"))?;
    if body.len() as u64 != length {
        return Err(bad("the body is shorter than its Content-Length"));
    }
    Ok(Request { body, ..request })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Writes a whole response and closes the connection.
pub(crate) fn respond(mut stream: &TcpStream, status: u16, headers: &[(&str, String)], body: &[u8]) {
    let mut head =
        format!("HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nConnection: close\r\n", reason(status), body.len());
    for (name, value) in headers {
        // Values are the server's own; a line break would end the head early.
        if !value.contains(['\r', '\n']) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str("\r\n");
    stream.set_write_timeout(Some(READ_DEADLINE)).ok();
    let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body)).and_then(|()| stream.flush());
    let _ = stream.shutdown(std::net::Shutdown::Write);
}
