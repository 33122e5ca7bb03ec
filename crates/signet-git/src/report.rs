//! Refusals in git's own protocol, so that `git` prints them rather than
//! `RPC failed`: a push's status report (`unpack ok`, then `ng <ref>
//! <reason>` for each ref) with a `remote:` message beside it, an `ERR`
//! pkt-line for a fetch, and the `# service=…` line of a smart-HTTP
//! advertisement.

use crate::pkt::{write_pkt, FLUSH, MAX_PKT_PAYLOAD};
use crate::receive_pack::Capabilities;

/// The two git services of smart HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `git-upload-pack`: clone and fetch.
    UploadPack,
    /// `git-receive-pack`: push.
    ReceivePack,
}

impl Service {
    /// The service's name as in URLs and content types, e.g.
    /// `git-receive-pack`.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::UploadPack => "git-upload-pack",
            Service::ReceivePack => "git-receive-pack",
        }
    }

    /// Reads a `service=` query value.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "git-upload-pack" => Some(Service::UploadPack),
            "git-receive-pack" => Some(Service::ReceivePack),
            _ => None,
        }
    }
}

/// The first lines of a smart-HTTP `info/refs` answer, before the refs a
/// `git <service> --advertise-refs --stateless-rpc` prints:
/// `# service=<service>` and a flush-pkt.
pub fn service_announcement(service: Service) -> Vec<u8> {
    let mut out = Vec::new();
    write_pkt(
        &mut out,
        format!("# service={}\n", service.as_str()).as_bytes(),
    );
    out.extend_from_slice(FLUSH);
    out
}

/// The side-band channel of a message: band 1 carries the report, band 2
/// what git prints as `remote: …`.
const BAND_DATA: u8 = 1;
const BAND_PROGRESS: u8 = 2;

/// The answer to a refused push, as `git receive-pack` would write it had
/// its hooks refused every ref: `unpack ok` (no pack was stored) and `ng
/// <ref> <reason>` for each of `refused`, which git prints as `! [remote
/// rejected] <ref> (<reason>)` before exiting non-zero.
///
/// With `side-band-64k` the report goes in band 1, after `message` in band
/// 2, each of its lines printed as `remote: <line>`; without it (git's
/// receive-pack multiplexes only then), `message` cannot be shown and only
/// the reasons are. A client that asked for no status report
/// (`report-status` or `report-status-v2`) cannot read one; it gets the
/// message (band 2, or an `ERR` pkt-line without side-band).
///
/// Control characters of reasons and message become `?`, and a reason is
/// cut so its line fits a pkt-line: nothing here can break the framing.
pub fn push_refusal(
    capabilities: &Capabilities,
    refused: &[(&str, &str)],
    message: &str,
) -> Vec<u8> {
    let reports = capabilities.report_status() || capabilities.report_status_v2();
    let mut out = Vec::new();
    if !capabilities.side_band_64k() {
        if reports {
            write_report(&mut out, refused);
        } else {
            write_err(&mut out, message);
        }
        return out;
    }
    for line in message.lines() {
        let mut payload = vec![BAND_PROGRESS];
        payload.extend_from_slice(fit(&sanitized(line), MAX_PKT_PAYLOAD - 2).as_bytes());
        payload.push(b'\n');
        write_pkt(&mut out, &payload);
    }
    if reports {
        let mut report = Vec::new();
        write_report(&mut report, refused);
        for piece in report.chunks(MAX_PKT_PAYLOAD - 1) {
            let mut payload = Vec::with_capacity(piece.len() + 1);
            payload.push(BAND_DATA);
            payload.extend_from_slice(piece);
            write_pkt(&mut out, &payload);
        }
    }
    out.extend_from_slice(FLUSH);
    out
}

/// The status report itself: `unpack ok`, an `ng` line per ref, a flush.
fn write_report(out: &mut Vec<u8>, refused: &[(&str, &str)]) {
    write_pkt(out, b"unpack ok\n");
    for (refname, reason) in refused {
        let refname = sanitized(refname).replace(' ', "?");
        let head = format!("ng {refname} ");
        let room = MAX_PKT_PAYLOAD.saturating_sub(head.len() + 1);
        let line = format!("{head}{}\n", fit(&sanitized(reason), room));
        write_pkt(out, line.as_bytes());
    }
    out.extend_from_slice(FLUSH);
}

/// The answer to a push refused before its refs could be judged (a
/// command list that cannot be read) or as a whole (a refusal that is not
/// about refs, when the proxy would rather not name them): one `ERR
/// <message>` pkt-line, inside side-band band 1 when the client asked for
/// `side-band-64k` (git reports a bare `ERR` there as `bad band #69`).
/// git prints `fatal: remote error: <message>` and exits non-zero.
///
/// `capabilities` are those the reader got to ([`crate::ReadError`]);
/// without them side-band is assumed, as `git push` always asks for it
/// when the server offers it, and GitHub does.
pub fn push_error(capabilities: Option<&Capabilities>, message: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if !capabilities.is_none_or(Capabilities::side_band_64k) {
        write_err(&mut out, message);
        return out;
    }
    let mut payload = vec![BAND_DATA];
    write_err(&mut payload, message);
    write_pkt(&mut out, &payload);
    out.extend_from_slice(FLUSH);
    out
}

/// The answer to a refused fetch (`git-upload-pack` POST, or anything
/// that must stop git at once): one `ERR <message>` pkt-line, which git
/// prints as `remote error: <message>` (or `fatal: remote error: …`)
/// before exiting non-zero. Lines of `message` are joined with `; `.
pub fn error_pkt(message: &str) -> Vec<u8> {
    let mut out = Vec::new();
    write_err(&mut out, message);
    out
}

/// The longest message an `ERR` line carries: a line git prints, which
/// must also fit inside a side-band line with room to spare.
const MAX_ERR_MESSAGE: usize = 4096;

fn write_err(out: &mut Vec<u8>, message: &str) {
    let one_line = message.lines().collect::<Vec<_>>().join("; ");
    let line = format!("ERR {}\n", fit(&sanitized(&one_line), MAX_ERR_MESSAGE));
    write_pkt(out, line.as_bytes());
}

/// `text` with control characters (newlines included) as `?`.
fn sanitized(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The longest prefix of `text` of at most `max` bytes, cut at a character
/// boundary.
fn fit(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receive_pack::{parse_receive_pack, ReceivePack};

    fn capabilities(words: &str) -> Capabilities {
        let line = format!(
            "{} {} refs/heads/main\0{words}",
            "1".repeat(40),
            "2".repeat(40)
        );
        let mut body = Vec::new();
        write_pkt(&mut body, line.as_bytes());
        body.extend_from_slice(FLUSH);
        match parse_receive_pack(&body, Default::default()) {
            Ok(ReceivePack::Push(request)) => request.capabilities().clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_report_without_side_band_is_plain_pkt_lines() {
        let out = push_refusal(
            &capabilities("report-status"),
            &[("refs/heads/main", "no rule allows it")],
            "ignored without side-band",
        );
        assert_eq!(
            out,
            b"000eunpack ok\n0029ng refs/heads/main no rule allows it\n0000"
        );
    }

    #[test]
    fn with_side_band_the_message_goes_in_band_2_and_the_report_in_band_1() {
        let out = push_refusal(
            &capabilities("report-status-v2 side-band-64k"),
            &[("refs/heads/main", "denied")],
            "signet: refused\nallowed: refs/heads/bot/**",
        );
        let mut expected = Vec::new();
        write_pkt(&mut expected, b"\x02signet: refused\n");
        write_pkt(&mut expected, b"\x02allowed: refs/heads/bot/**\n");
        write_pkt(
            &mut expected,
            b"\x01000eunpack ok\n001eng refs/heads/main denied\n0000",
        );
        expected.extend_from_slice(b"0000");
        assert_eq!(out, expected);
    }

    #[test]
    fn plain_side_band_is_not_multiplexed_as_receive_pack_ignores_it() {
        let out = push_refusal(
            &capabilities("report-status side-band"),
            &[("refs/heads/main", "denied")],
            "m",
        );
        assert!(out.starts_with(b"000eunpack ok\n"));
    }

    #[test]
    fn without_a_status_report_the_message_is_all_git_can_get() {
        let out = push_refusal(&capabilities(""), &[("refs/heads/main", "x")], "no\nway");
        assert_eq!(out, b"0010ERR no; way\n");
        let banded = push_refusal(&capabilities("side-band-64k"), &[], "no");
        assert_eq!(banded, b"0008\x02no\n0000");
    }

    #[test]
    fn control_characters_and_long_reasons_cannot_break_the_framing() {
        let long = "é".repeat(40_000);
        let out = push_refusal(
            &capabilities("report-status"),
            &[("refs/heads/a", &format!("bad\nline\0{long}"))],
            "",
        );
        let line_len = usize::from_str_radix(std::str::from_utf8(&out[14..18]).unwrap_or(""), 16);
        assert_eq!(line_len, Ok(crate::pkt::MAX_PKT_LEN));
        assert!(out[18..].starts_with(b"ng refs/heads/a bad?line?\xc3\xa9"));
        assert!(out.ends_with(b"\n0000"));
        assert_eq!(error_pkt("a\tb"), b"000cERR a?b\n");
    }

    #[test]
    fn a_long_report_is_split_over_several_band_1_lines() {
        let refs: Vec<String> = (0..3000)
            .map(|i| format!("refs/heads/branch-{i}"))
            .collect();
        let refused: Vec<(&str, &str)> = refs.iter().map(|r| (r.as_str(), "denied")).collect();
        let out = push_refusal(&capabilities("report-status side-band-64k"), &refused, "");
        // Demultiplexing band 1 gives back the plain report.
        let (mut at, mut band1) = (0, Vec::new());
        loop {
            let len =
                usize::from_str_radix(std::str::from_utf8(&out[at..at + 4]).unwrap_or(""), 16)
                    .unwrap_or(0);
            if len == 0 {
                break;
            }
            assert!(len <= crate::pkt::MAX_PKT_LEN);
            assert_eq!(out[at + 4], BAND_DATA);
            band1.extend_from_slice(&out[at + 5..at + len]);
            at += len;
        }
        assert_eq!(at + 4, out.len());
        let mut plain = Vec::new();
        write_report(&mut plain, &refused);
        assert_eq!(band1, plain);
        assert!(plain.len() > MAX_PKT_PAYLOAD);
    }

    #[test]
    fn a_push_error_is_an_err_line_in_band_1_unless_side_band_is_off() {
        assert_eq!(
            push_error(Some(&capabilities("report-status")), "bad"),
            b"000cERR bad\n"
        );
        assert_eq!(
            push_error(Some(&capabilities("report-status side-band-64k")), "bad"),
            b"0011\x01000cERR bad\n0000"
        );
        assert_eq!(push_error(None, "bad"), b"0011\x01000cERR bad\n0000");
        // A long message is cut, never the framing.
        let long = push_error(None, &"é".repeat(40_000));
        assert_eq!(&long[..13], b"100e\x011009ERR ");
        assert_eq!(long.len(), 0x100e + 4);
        assert!(long.ends_with(b"\xc3\xa9\n0000"));
    }

    #[test]
    fn the_service_announcement_is_what_http_backend_writes() {
        assert_eq!(
            service_announcement(Service::ReceivePack),
            b"001f# service=git-receive-pack\n0000"
        );
        assert_eq!(
            service_announcement(Service::UploadPack),
            b"001e# service=git-upload-pack\n0000"
        );
    }
}
