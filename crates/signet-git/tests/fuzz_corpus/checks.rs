//! The properties the `git_receive_pack` fuzz target asserts, shared by
//! the target (`#[path]` include), the corpus replay
//! (`tests/fuzz_corpus.rs`) and the property tests (`tests/properties.rs`).

use signet_git::pkt::write_pkt;
use signet_git::{
    check_ref_name, parse_receive_pack, Limits, Progress, ReadError, ReceivePack,
    ReceivePackReader, ReceivePackRequest,
};

/// Limits small enough for the fuzzer to reach every one of them.
pub const SMALL: Limits = Limits {
    max_commands: 3,
    max_prefix_bytes: 400,
    max_pkts: 8,
};

/// What reading a body gave, wherever the chunks were split.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Probe,
    /// The request, and where the pack starts in the whole body.
    Push(ReceivePackRequest, usize),
    /// The error, with the capabilities read before it.
    Refused(ReadError),
}

/// Reads `body` fed in chunks of the given sizes (cycled; 0 counts as 1).
pub fn read_chunked(body: &[u8], sizes: &[usize], limits: Limits) -> Outcome {
    let mut reader = ReceivePackReader::new(limits);
    let mut at = 0;
    let mut sizes = sizes.iter().cycle();
    while at < body.len() {
        let size = sizes.next().copied().unwrap_or(1).max(1);
        let chunk = &body[at..(at + size).min(body.len())];
        match reader.feed(chunk) {
            Ok(Progress::NeedMore(more)) => reader = more,
            Ok(Progress::Complete {
                request,
                pack_start,
            }) => return Outcome::Push(request, at + pack_start),
            Err(e) => return Outcome::Refused(e),
        }
        at += chunk.len();
    }
    match reader.finish() {
        Ok(_probe) => Outcome::Probe,
        Err(e) => Outcome::Refused(e),
    }
}

/// The canonical body of a command list: what `git push` would write for
/// it (`shallow` lines, the commands with `\0 ` and the capabilities on the
/// first, a flush, the push options and their flush).
pub fn encode(request: &ReceivePackRequest) -> Vec<u8> {
    let mut out = Vec::new();
    for oid in request.shallow() {
        write_pkt(&mut out, format!("shallow {oid}\n").as_bytes());
    }
    for (i, command) in request.commands().iter().enumerate() {
        let mut line = format!(
            "{} {} {}",
            command.old(),
            command.new_oid(),
            command.refname()
        );
        let words = request.capabilities().words();
        if i == 0 && !words.is_empty() {
            line.push_str("\0 ");
            line.push_str(&words.join(" "));
        }
        write_pkt(&mut out, line.as_bytes());
    }
    out.extend_from_slice(b"0000");
    if request.capabilities().push_options() {
        for option in request.push_options() {
            write_pkt(&mut out, format!("{option}\n").as_bytes());
        }
        out.extend_from_slice(b"0000");
    }
    out
}

/// The `git_receive_pack` target. `data[0]` picks the limits (high bit:
/// [`SMALL`]) and seeds the chunk sizes; the rest is the body.
///
/// * reading never panics, and gives the same outcome in one chunk, in
///   the seeded chunks and byte by byte;
/// * the probe is exactly `0000`;
/// * a push is within the limits, its prefix ends with a flush, and its
///   pack starts at `prefix_len`; every ref passes git's rules and every
///   id has its format's length in lowercase hex;
/// * the canonical encoding of a push reads back to the same push.
pub fn git_receive_pack(data: &[u8]) {
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let limits = if seed & 0x80 != 0 {
        SMALL
    } else {
        Limits::default()
    };
    let sizes: Vec<usize> = (0..8u8)
        .map(|i| usize::from(seed.wrapping_mul(i.wrapping_add(3)) % 13) + 1)
        .collect();
    let whole = read_chunked(body, &[usize::MAX], limits);
    assert_eq!(read_chunked(body, &sizes, limits), whole, "seeded chunks");
    assert_eq!(read_chunked(body, &[1], limits), whole, "byte by byte");
    match parse_receive_pack(body, limits) {
        Ok(ReceivePack::Probe) => assert_eq!(whole, Outcome::Probe),
        Ok(ReceivePack::Push(request)) => {
            let start = request.prefix_len();
            assert_eq!(whole, Outcome::Push(request.clone(), start));
            check_push(body, &request, limits);
        }
        Err(e) => assert!(matches!(&whole, Outcome::Refused(r) if r.error() == e)),
    }
    if whole == Outcome::Probe {
        assert_eq!(body, b"0000");
    }
}

fn check_push(body: &[u8], request: &ReceivePackRequest, limits: Limits) {
    let prefix = request.prefix_len();
    assert!(prefix <= body.len() && prefix <= limits.max_prefix_bytes);
    assert!(body[..prefix].ends_with(b"0000"));
    assert!(!request.commands().is_empty() && request.commands().len() <= limits.max_commands);
    let hex = request.capabilities().object_format().hex_len();
    let oids = request
        .commands()
        .iter()
        .flat_map(|c| [c.old(), c.new_oid()])
        .chain(request.shallow());
    for oid in oids {
        assert_eq!(oid.as_str().len(), hex);
        assert!(oid
            .as_str()
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    }
    for command in request.commands() {
        assert_eq!(check_ref_name(command.refname().as_str()), Ok(()));
    }
    let canonical = encode(request);
    let roomy = Limits {
        max_commands: usize::MAX,
        max_prefix_bytes: canonical.len(),
        max_pkts: usize::MAX,
    };
    match parse_receive_pack(&canonical, roomy) {
        Ok(ReceivePack::Push(again)) => {
            assert_eq!(again.prefix_len(), canonical.len());
            assert_eq!(again.commands(), request.commands());
            assert_eq!(again.shallow(), request.shallow());
            assert_eq!(again.capabilities(), request.capabilities());
            assert_eq!(again.push_options(), request.push_options());
        }
        other => panic!("the canonical encoding reads as {other:?}"),
    }
}
