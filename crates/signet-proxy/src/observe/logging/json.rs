//! The JSON line every log event becomes.
//!
//! Byte for byte the line `tracing-subscriber`'s JSON formatter writes with
//! `flatten_event(true)` and no target or spans:
//! `{"timestamp":"…Z","level":"INFO","message":"…",<fields in order>}`.
//! It writes straight into the layer's buffer instead of going through
//! `serde`'s map serializer, which was the costliest part of a refused
//! request (issue 9: about 27,000 of its 56,000 instructions).

use std::fmt::{self, Write as _};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter installed by [`super::init`].
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(
            writer,
            "{{\"timestamp\":\"{}\",\"level\":\"{}\"",
            humantime::format_rfc3339_micros(SystemTime::now()),
            event.metadata().level()
        )?;
        let mut fields = Fields {
            out: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_str("}\n")
    }
}

/// Appends `,"name":value` for each field, in the order they are recorded.
struct Fields<'a, W> {
    out: &'a mut W,
    result: fmt::Result,
}

impl<W: fmt::Write> Fields<'_, W> {
    fn entry(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = (|| {
                self.out.write_str(",\"")?;
                Escaped(&mut *self.out).write_str(field.name())?;
                self.out.write_str("\":")?;
                value(self.out)
            })();
        }
    }
}

impl<W: fmt::Write> Visit for Fields<'_, W> {
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, |out| {
            out.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, |out| {
            out.write_str(itoa::Buffer::new().format(value))
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, |out| {
            out.write_str(itoa::Buffer::new().format(value))
        });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // `serde_json`'s rendering: shortest round-trip digits, and `null`
        // for what JSON cannot hold.
        self.entry(field, |out| match serde_json::Number::from_f64(value) {
            Some(number) => write!(out, "{number}"),
            None => out.write_str("null"),
        });
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, |out| string(out, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.entry(field, |out| {
            out.write_str("\"")?;
            write!(Escaped(&mut *out), "{value:?}")?;
            out.write_str("\"")
        });
    }
}

/// `text` as a JSON string, quoted.
fn string<W: fmt::Write>(out: &mut W, text: &str) -> fmt::Result {
    out.write_str("\"")?;
    Escaped(&mut *out).write_str(text)?;
    out.write_str("\"")
}

/// The bytes [`Escaped`] escapes.
static NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = true;
        byte += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// Writes what it is given JSON-escaped, as `serde_json` escapes: `"`, `\`
/// and the control characters below U+0020 (short forms where JSON has
/// them, else `\u00xx`); everything else, DEL and non-ASCII included, as is.
struct Escaped<'a, W>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaped<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let bytes = text.as_bytes();
        // Nearly every string needs no escape: one pass to find out, then one
        // copy.
        if !bytes.iter().any(|&byte| NEEDS_ESCAPE[usize::from(byte)]) {
            return self.0.write_str(text);
        }
        let mut start = 0;
        for (at, &byte) in bytes.iter().enumerate() {
            let short = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0x00..=0x1f => "",
                _ => continue,
            };
            // Every byte escaped is ASCII, so `at` is a character boundary.
            self.0.write_str(&text[start..at])?;
            if short.is_empty() {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                self.0.write_str("\\u00")?;
                self.0.write_char(char::from(HEX[usize::from(byte >> 4)]))?;
                self.0
                    .write_char(char::from(HEX[usize::from(byte & 0xf)]))?;
            } else {
                self.0.write_str(short)?;
            }
            start = at + 1;
        }
        self.0.write_str(&text[start..])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Sink {
        type Writer = Sink;
        fn make_writer(&'a self) -> Sink {
            self.clone()
        }
    }

    impl Sink {
        /// The lines written, each with its timestamp's value blanked (the
        /// only part that differs between two formatters).
        fn lines(&self) -> Vec<String> {
            let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
            text.lines()
                .map(|line| {
                    let value: serde_json::Value = serde_json::from_str(line).unwrap();
                    let stamp = value["timestamp"].as_str().unwrap();
                    line.replacen(stamp, "T", 1)
                })
                .collect()
        }
    }

    /// Every kind of field, with strings that need each kind of escape.
    fn events() {
        let tricky = "quote \" backslash \\ nl \n cr \r tab \t bs \u{8} ff \u{c} nul \0 us \u{1f} del \u{7f} é ✓ 🦀";
        tracing::info!("plain message");
        tracing::warn!(
            method = "GET",
            path = tricky,
            status = 401u16,
            negative = -42i64,
            big = u64::MAX,
            yes = true,
            no = false,
            latency_ms = 0.300_922,
            duration_ms = 0.1 + 0.2,
            tiny = 1e-300,
            huge = 1e300,
            zero = -0.0,
            nan = f64::NAN,
            infinite = f64::INFINITY,
            peer = %std::net::SocketAddr::from(([192, 0, 2, 7], 4242)),
            v6 = %"[fe80::1%2]:443".parse::<std::net::SocketAddr>().unwrap(),
            debug = ?Some(tricky),
            absent = Option::<&str>::None,
            "message with {} and \"quotes\"",
            tricky
        );
        tracing::error!(
            error = &io::Error::other("boom \"x\"") as &(dyn std::error::Error + 'static),
            "failed"
        );
        tracing::debug!(
            code = "INVALID_PROOF",
            detail = "byte 0x20 at offset 2 is not visible ASCII",
            "request refused"
        );
    }

    #[test]
    fn lines_are_byte_for_byte_those_of_the_tracing_subscriber_json_formatter() {
        let ours = Sink::default();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JsonLine)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(ours.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, events);

        let reference = Sink::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_target(false)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(reference.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, events);

        let (ours, reference) = (ours.lines(), reference.lines());
        assert_eq!(ours.len(), 4);
        assert_eq!(ours, reference);
    }

    #[test]
    fn the_timestamp_is_rfc_3339_utc_with_microseconds() {
        let sink = Sink::default();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JsonLine)
            .with_writer(sink.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || tracing::info!("x"));
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let value: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        let stamp = value["timestamp"].as_str().unwrap();
        // 2026-12-03T07:33:59.187552Z
        assert_eq!(stamp.len(), 27, "{stamp}");
        assert!(
            stamp.ends_with('Z') && stamp.as_bytes()[19] == b'.',
            "{stamp}"
        );
        let parsed = humantime::parse_rfc3339(stamp).unwrap();
        let skew = SystemTime::now().duration_since(parsed).unwrap();
        assert!(skew < std::time::Duration::from_secs(60), "{stamp}");
    }
}
