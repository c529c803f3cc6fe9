//! Server-sent events read line by line from a blocking reader: each event's `data:` lines
//! joined, `:` comments and other fields skipped (the SSE spec's rules that chat servers use).

use std::io::BufRead;

/// Longest line accepted; a server sending more without a newline is not speaking SSE.
pub const MAX_LINE_BYTES: usize = 8 * 1024 * 1024;

/// Reads SSE events' data from `reader`.
pub struct SseReader<R> {
    reader: R,
    line: Vec<u8>,
}

impl<R: BufRead> SseReader<R> {
    /// Events from `reader`.
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            line: Vec::new(),
        }
    }

    /// The next event's data; `Ok(None)` at the end of the body. A body that ends in the middle
    /// of an event still yields what that event had.
    pub fn next_data(&mut self) -> std::io::Result<Option<String>> {
        let mut data: Option<String> = None;
        loop {
            self.line.clear();
            let read = <&mut R as std::io::Read>::take(&mut self.reader, MAX_LINE_BYTES as u64 + 1)
                .read_until(b'\n', &mut self.line)?;
            if read == 0 {
                return Ok(data);
            }
            if self.line.len() > MAX_LINE_BYTES {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("an event line is longer than {MAX_LINE_BYTES} bytes"),
                ));
            }
            let text = String::from_utf8_lossy(&self.line);
            let text = text.trim_end_matches(['\n', '\r']);
            if text.is_empty() {
                if data.is_some() {
                    return Ok(data);
                }
                continue;
            }
            if let Some(value) = text.strip_prefix("data:") {
                let value = value.strip_prefix(' ').unwrap_or(value);
                match &mut data {
                    Some(joined) => {
                        joined.push('\n');
                        joined.push_str(value);
                    }
                    None => data = Some(value.to_string()),
                }
            }
            // Comments (`: keep-alive`), `event:`, `id:` and `retry:` carry nothing we use.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_lines_join_and_comments_and_blank_runs_are_skipped() {
        let body =
            ": ping\n\ndata: {\"a\":1}\r\n\r\nevent: x\ndata:one\ndata: two\n\n\n\ndata: [DONE]";
        let mut reader = SseReader::new(body.as_bytes());
        assert_eq!(reader.next_data().unwrap().as_deref(), Some("{\"a\":1}"));
        assert_eq!(reader.next_data().unwrap().as_deref(), Some("one\ntwo"));
        assert_eq!(reader.next_data().unwrap().as_deref(), Some("[DONE]"));
        assert_eq!(reader.next_data().unwrap(), None);
    }
}
