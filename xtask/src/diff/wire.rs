//! HTTP/1.1 on the wire, shared by the runner's client and servers: heads parsed with
//! `httparse` so header order and case are exactly what was sent, and bodies framed by
//! `content-length`, chunked encoding (with trailers) or the end of the connection.

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::scenario::Pairs;

/// More headers than any scenario sends or Envoy adds.
const MAX_HEADERS: usize = 128;

/// A connection's read side with what was read past the last parsed item.
pub struct Reader<S> {
    stream: S,
    buffer: Vec<u8>,
}

/// A request line and headers as received.
#[derive(Debug)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    /// Names as sent (not lowercased), in wire order.
    pub headers: Pairs,
}

/// A status line and headers as received.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: u16,
    pub headers: Pairs,
}

/// How a message's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

/// The framing a request's or response's headers announce; a request without either header
/// has no body, a response reads until the connection closes.
pub fn framing(headers: &Pairs, is_response: bool) -> Result<Framing> {
    if let Some(encoding) = header(headers, "transfer-encoding") {
        if encoding.to_ascii_lowercase().ends_with("chunked") {
            return Ok(Framing::Chunked);
        }
        bail!("unsupported transfer-encoding {encoding:?}");
    }
    if let Some(length) = header(headers, "content-length") {
        let length = length
            .trim()
            .parse()
            .with_context(|| format!("content-length {length:?}"))?;
        return Ok(Framing::Length(length));
    }
    Ok(if is_response {
        Framing::UntilClose
    } else {
        Framing::Empty
    })
}

/// The first value of a header, by case-insensitive name.
pub fn header<'a>(headers: &'a Pairs, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

fn pairs(headers: &[httparse::Header<'_>]) -> Pairs {
    headers
        .iter()
        .map(|header| {
            (
                header.name.to_owned(),
                String::from_utf8_lossy(header.value).into_owned(),
            )
        })
        .collect()
}

impl<S: AsyncRead + Unpin> Reader<S> {
    pub fn new(stream: S) -> Self {
        Reader {
            stream,
            buffer: Vec::new(),
        }
    }

    /// The underlying stream, to write on.
    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Reads more bytes; false at the end of the stream.
    async fn fill(&mut self) -> Result<bool> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await.context("reading")?;
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// The next request head, or `None` when the peer closed the connection between requests.
    pub async fn request_head(&mut self) -> Result<Option<RequestHead>> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut request = httparse::Request::new(&mut headers);
            if let httparse::Status::Complete(length) = request
                .parse(&self.buffer)
                .context("parsing a request head")?
            {
                let head = RequestHead {
                    method: request.method.unwrap_or_default().to_owned(),
                    path: request.path.unwrap_or_default().to_owned(),
                    headers: pairs(request.headers),
                };
                self.buffer.drain(..length);
                return Ok(Some(head));
            }
            if !self.fill().await? {
                if self.buffer.is_empty() {
                    return Ok(None);
                }
                bail!("the connection closed inside a request head");
            }
        }
    }

    /// The next response head, skipping `1xx` interim responses; `None` when the peer closed
    /// the connection first.
    pub async fn response_head(&mut self) -> Result<Option<ResponseHead>> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(length) = response
                .parse(&self.buffer)
                .context("parsing a response head")?
            {
                let head = ResponseHead {
                    status: response.code.unwrap_or_default(),
                    headers: pairs(response.headers),
                };
                self.buffer.drain(..length);
                if (100..200).contains(&head.status) {
                    continue;
                }
                return Ok(Some(head));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Exactly `n` bytes.
    async fn take(&mut self, n: usize) -> Result<Vec<u8>> {
        while self.buffer.len() < n {
            if !self.fill().await? {
                bail!("the connection closed inside a body");
            }
        }
        Ok(self.buffer.drain(..n).collect())
    }

    /// One CRLF-terminated line, without the CRLF.
    async fn line(&mut self) -> Result<String> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|pair| pair == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
                self.buffer.drain(..end + 2);
                return Ok(line);
            }
            if !self.fill().await? {
                bail!("the connection closed inside a chunked body");
            }
        }
    }

    /// A body and its trailers (only chunked bodies have trailers).
    pub async fn body(&mut self, framing: Framing) -> Result<(Vec<u8>, Pairs)> {
        match framing {
            Framing::Empty => Ok((Vec::new(), Vec::new())),
            Framing::Length(n) => Ok((self.take(n).await?, Vec::new())),
            Framing::UntilClose => {
                while self.fill().await? {}
                Ok((std::mem::take(&mut self.buffer), Vec::new()))
            }
            Framing::Chunked => {
                let mut body = Vec::new();
                loop {
                    let line = self.line().await?;
                    let size = line.split(';').next().unwrap_or_default().trim();
                    let size = usize::from_str_radix(size, 16)
                        .with_context(|| format!("chunk size {line:?}"))?;
                    if size == 0 {
                        break;
                    }
                    body.extend(self.take(size).await?);
                    if !self.line().await?.is_empty() {
                        bail!("a chunk is longer than its size");
                    }
                }
                let mut trailers = Vec::new();
                loop {
                    let line = self.line().await?;
                    if line.is_empty() {
                        return Ok((body, trailers));
                    }
                    let (name, value) = line
                        .split_once(':')
                        .with_context(|| format!("trailer line {line:?}"))?;
                    trailers.push((name.to_owned(), value.trim().to_owned()));
                }
            }
        }
    }
}

/// Writes a head's header lines, then the body framed as `framing` says (chunked carries the
/// trailers). The caller wrote the start line and decided the framing headers.
pub async fn write_message<W: AsyncWrite + Unpin>(
    writer: &mut W,
    start_line: &str,
    headers: &Pairs,
    body: &[u8],
    trailers: &Pairs,
    chunked: bool,
) -> Result<()> {
    let mut bytes = format!("{start_line}\r\n").into_bytes();
    for (name, value) in headers {
        bytes.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    bytes.extend_from_slice(b"\r\n");
    if chunked {
        if !body.is_empty() {
            bytes.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
            bytes.extend_from_slice(body);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"0\r\n");
        for (name, value) in trailers {
            bytes.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
    } else {
        bytes.extend_from_slice(body);
    }
    writer.write_all(&bytes).await.context("writing")?;
    writer.flush().await.context("writing")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn a_chunked_message_round_trips_with_its_trailers_and_header_case() {
        let trailers = vec![("X-Sum".to_owned(), "3".to_owned())];
        let headers = vec![
            ("Host".to_owned(), "a".to_owned()),
            ("x-b".to_owned(), "1".to_owned()),
            ("transfer-encoding".to_owned(), "chunked".to_owned()),
            ("X-B".to_owned(), "2".to_owned()),
        ];
        let mut bytes = Vec::new();
        block_on(write_message(
            &mut bytes,
            "POST /p HTTP/1.1",
            &headers,
            b"hello",
            &trailers,
            true,
        ))
        .unwrap();
        let mut reader = Reader::new(&bytes[..]);
        let head = block_on(reader.request_head()).unwrap().unwrap();
        assert_eq!((head.method.as_str(), head.path.as_str()), ("POST", "/p"));
        assert_eq!(head.headers, headers);
        let framing = framing(&head.headers, false).unwrap();
        let (body, received) = block_on(reader.body(framing)).unwrap();
        assert_eq!((body.as_slice(), received), (&b"hello"[..], trailers));
        assert!(block_on(reader.request_head()).unwrap().is_none());
    }
}
