//! The least HTTP/1.1 a load generator needs: requests are pre-built bytes,
//! responses are framed by `Content-Length` or chunked encoding.

use memchr::memmem;

/// A response found complete at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framed {
    /// Status code.
    pub status: u16,
    /// Bytes the whole response takes, head and body.
    pub len: usize,
}

/// The response at the start of `buf`: `Ok(None)` while incomplete.
pub fn frame(buf: &[u8]) -> Result<Option<Framed>, String> {
    let Some(head_len) = memmem::find(buf, b"\r\n\r\n").map(|at| at + 4) else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_len]).map_err(|_| "head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| "bad content-length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    if chunked {
        return Ok(chunked_end(buf, head_len)?.map(|len| Framed { status, len }));
    }
    let len = head_len + length.unwrap_or(0);
    Ok((buf.len() >= len).then_some(Framed { status, len }))
}

/// Where a chunked body that starts at `at` ends (no trailers expected).
fn chunked_end(buf: &[u8], mut at: usize) -> Result<Option<usize>, String> {
    loop {
        let Some(line_end) = memmem::find(&buf[at..], b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&buf[at..at + line_end]).map_err(|_| "bad chunk size")?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        at += line_end + 2;
        if size == 0 {
            return Ok((buf.len() >= at + 2).then_some(at + 2));
        }
        at += size + 2;
        if buf.len() < at {
            return Ok(None);
        }
    }
}

/// One GET, as bytes, with an optional `Signet-Proof`.
pub fn get(host: &str, target: &str, proof: Option<&str>, close: bool) -> Vec<u8> {
    let mut request = format!(
        "GET {target} HTTP/1.1\r\nhost: {host}\r\nuser-agent: signet-bench\r\naccept: application/vnd.github+json\r\n"
    );
    if let Some(proof) = proof {
        request.push_str("signet-proof: ");
        request.push_str(proof);
        request.push_str("\r\n");
    }
    if close {
        request.push_str("connection: close\r\n");
    }
    request.push_str("\r\n");
    request.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_and_chunked_responses_are_framed() {
        let fixed = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1";
        assert_eq!(
            frame(fixed),
            Ok(Some(Framed {
                status: 200,
                len: 40
            }))
        );
        assert_eq!(frame(&fixed[..39]), Ok(None));
        let chunked = b"HTTP/1.1 401 X\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n";
        assert_eq!(
            frame(chunked),
            Ok(Some(Framed {
                status: 401,
                len: chunked.len()
            }))
        );
        assert_eq!(frame(&chunked[..chunked.len() - 1]), Ok(None));
    }
}
