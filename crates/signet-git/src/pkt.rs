//! pkt-lines, git's framing: four hex digits giving the length of the
//! whole line (header included), then the payload. `0000` is a flush-pkt,
//! `0001` a delim-pkt and `0002` a response-end-pkt; `0003` and every
//! length from 1 to 3 otherwise cannot frame a payload.

/// The longest pkt-line git writes or reads, header included
/// (`LARGE_PACKET_MAX`).
pub const MAX_PKT_LEN: usize = 65520;

/// The longest payload of a pkt-line.
pub const MAX_PKT_PAYLOAD: usize = MAX_PKT_LEN - 4;

/// A flush-pkt: the end of a list.
pub const FLUSH: &[u8; 4] = b"0000";

/// What a four-byte pkt-line header announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PktHeader {
    /// A data line carrying this many payload bytes (0 for `0004`).
    Data(usize),
    /// `0000`.
    Flush,
    /// `0001` (protocol v2 only).
    Delim,
    /// `0002` (protocol v2 only).
    ResponseEnd,
}

/// Reads a pkt-line header. Only lowercase hex is accepted: git writes
/// nothing else, and a length the upstream might read differently must not
/// frame what the policy reads. `None` for non-hex digits, `0003`, and
/// lengths over [`MAX_PKT_LEN`].
pub fn parse_header(header: [u8; 4]) -> Option<PktHeader> {
    let mut len = 0usize;
    for digit in header {
        let value = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            _ => return None,
        };
        len = len << 4 | usize::from(value);
    }
    match len {
        0 => Some(PktHeader::Flush),
        1 => Some(PktHeader::Delim),
        2 => Some(PktHeader::ResponseEnd),
        3 => None,
        4..=MAX_PKT_LEN => Some(PktHeader::Data(len - 4)),
        _ => None,
    }
}

/// Appends `payload` as one pkt-line to `out`. A payload longer than
/// [`MAX_PKT_PAYLOAD`] is cut there (never a panic on a long ref name):
/// callers that must keep everything split it first, as the side-band
/// encoder does.
pub fn write_pkt(out: &mut Vec<u8>, payload: &[u8]) {
    let payload = &payload[..payload.len().min(MAX_PKT_PAYLOAD)];
    let len = payload.len() + 4;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend((0..4).rev().map(|i| HEX[(len >> (4 * i)) & 0xf]));
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_lengths_and_limits_read_as_git_reads_them() {
        assert_eq!(parse_header(*b"0000"), Some(PktHeader::Flush));
        assert_eq!(parse_header(*b"0001"), Some(PktHeader::Delim));
        assert_eq!(parse_header(*b"0002"), Some(PktHeader::ResponseEnd));
        assert_eq!(parse_header(*b"0003"), None);
        assert_eq!(parse_header(*b"0004"), Some(PktHeader::Data(0)));
        assert_eq!(parse_header(*b"fff0"), Some(PktHeader::Data(65516)));
        assert_eq!(parse_header(*b"fff1"), None);
        assert_eq!(parse_header(*b"ffff"), None);
        assert_eq!(parse_header(*b"00A0"), None);
        assert_eq!(parse_header(*b"00a0"), Some(PktHeader::Data(156)));
        assert_eq!(parse_header(*b"+004"), None);
        assert_eq!(parse_header(*b" 004"), None);
    }

    #[test]
    fn written_lines_carry_their_length_in_lowercase_hex() {
        let mut out = Vec::new();
        write_pkt(&mut out, b"unpack ok\n");
        write_pkt(&mut out, b"");
        assert_eq!(out, b"000eunpack ok\n0004");
        let mut long = Vec::new();
        write_pkt(&mut long, &[b'x'; MAX_PKT_PAYLOAD]);
        assert_eq!(&long[..4], b"fff0");
        let mut cut = Vec::new();
        write_pkt(&mut cut, &[b'x'; MAX_PKT_PAYLOAD + 10]);
        assert_eq!(cut, long);
    }
}
