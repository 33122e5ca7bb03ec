//! The request of a push (`POST …/git-receive-pack`): its command list, read
//! incrementally from the streamed body so the proxy can decide before the
//! upstream sees a byte, and never its pack.
//!
//! The body is, in pkt-lines: optional `shallow <oid>` lines (a push from a
//! shallow clone), then `<old-oid> <new-oid> <ref>` commands, the first
//! carrying `\0` and the capabilities, then a flush-pkt; then, when the
//! `push-options` capability was sent, push options up to another flush;
//! then the pack. Anything this reader cannot read in full, or that the
//! upstream could read differently, is refused: fail closed.

use std::fmt;

use crate::pkt::{parse_header, PktHeader};
use crate::refname::{RefName, RefNameError};

/// How much of a body the reader takes before the command list must have
/// ended. Each bounds what one request can make the proxy hold or do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Commands (refs) in one push.
    pub max_commands: usize,
    /// Bytes of the body before the pack (pkt headers included).
    pub max_prefix_bytes: usize,
    /// pkt-lines before the pack: shallow lines, commands, push options,
    /// flushes.
    pub max_pkts: usize,
}

impl Default for Limits {
    /// 1,000 commands, 1 MiB, 10,000 pkt-lines: far above what `git push`
    /// sends (one command per ref, a shallow line per shallow root).
    fn default() -> Self {
        Limits {
            max_commands: 1000,
            max_prefix_bytes: 1 << 20,
            max_pkts: 10_000,
        }
    }
}

/// Why a receive-pack request is refused. Each message is short and names
/// no byte of the request, so it can go into a git `ng` line or a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceivePackError {
    /// A pkt-line length that is not four lowercase hex digits, is `0003`
    /// or more than 65520.
    #[error("invalid pkt-line length")]
    BadPktLength,
    /// A delim-pkt or response-end-pkt (protocol v2 framing, never part of
    /// a push).
    #[error("unexpected delim or response-end pkt-line")]
    UnexpectedSpecialPkt,
    /// A data pkt-line with nothing in it (`0004`, or only a newline).
    #[error("empty pkt-line in the command list")]
    EmptyLine,
    /// More bytes before the pack than [`Limits::max_prefix_bytes`].
    #[error("command list too large")]
    PrefixTooLarge,
    /// More pkt-lines before the pack than [`Limits::max_pkts`].
    #[error("too many pkt-lines before the pack")]
    TooManyPkts,
    /// More commands than [`Limits::max_commands`].
    #[error("too many refs in one push")]
    TooManyCommands,
    /// The body ended before the command list did.
    #[error("the body ended inside the command list")]
    Truncated,
    /// A flush with no command before it, followed by more bytes (only a
    /// body that is exactly `0000`, git's probe, may carry no command).
    #[error("a push without commands")]
    NoCommands,
    /// A line that is not `<old-oid> <new-oid> <ref>`.
    #[error("malformed command line")]
    BadCommand,
    /// An object id that is not lowercase hex of the length the
    /// `object-format` capability calls for (40 for sha1, 64 for sha256).
    #[error("object id does not match the object format")]
    BadOid,
    /// A ref name that is not UTF-8.
    #[error("ref name is not UTF-8")]
    RefNotUtf8,
    /// A ref name git's rules refuse.
    #[error("invalid ref name: {0}")]
    BadRefName(RefNameError),
    /// A signed push (`push-cert`): its certificate framing is not read here.
    #[error("signed pushes (push-cert) are not supported")]
    PushCert,
    /// Capabilities not written as single-space-separated printable words,
    /// or a framing capability given twice.
    #[error("malformed capability list")]
    BadCapabilities,
    /// `object-format` other than `sha1` or `sha256`.
    #[error("unknown object format")]
    UnknownObjectFormat,
    /// Capabilities on a command other than the first.
    #[error("capabilities after the first command")]
    CapabilitiesNotFirst,
    /// A `shallow` line after the first command.
    #[error("shallow line after a command")]
    ShallowAfterCommands,
}

/// The repository's hash function, from the `object-format` capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ObjectFormat {
    /// SHA-1: 40 hex digits (the default without the capability).
    #[default]
    Sha1,
    /// SHA-256: 64 hex digits.
    Sha256,
}

impl ObjectFormat {
    /// The length of an object id in hex digits.
    pub fn hex_len(self) -> usize {
        match self {
            ObjectFormat::Sha1 => 40,
            ObjectFormat::Sha256 => 64,
        }
    }
}

/// An object id: lowercase hex of its format's length.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Oid(String);

impl Oid {
    fn parse(bytes: &[u8], format: ObjectFormat) -> Result<Self, ReceivePackError> {
        if bytes.len() != format.hex_len()
            || !bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(ReceivePackError::BadOid);
        }
        Ok(Oid(String::from_utf8_lossy(bytes).into_owned()))
    }

    /// The all-zero id, which stands for "no object".
    pub fn is_zero(&self) -> bool {
        self.0.bytes().all(|b| b == b'0')
    }

    /// The hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a command does to its ref.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    /// Old id zero (new id set): the ref is created.
    Create,
    /// Both ids set: the ref moves (fast-forward or forced: the request
    /// cannot tell).
    Update,
    /// New id zero: the ref is deleted (old id zero too when the remote
    /// does not have it).
    Delete,
}

/// One `<old-oid> <new-oid> <ref>` command of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    old: Oid,
    new: Oid,
    refname: RefName,
}

impl Command {
    /// The ref's id before the push (zero when it is created).
    pub fn old(&self) -> &Oid {
        &self.old
    }
    /// The ref's id after the push (zero when it is deleted).
    pub fn new_oid(&self) -> &Oid {
        &self.new
    }
    /// The ref.
    pub fn refname(&self) -> &RefName {
        &self.refname
    }
    /// Create, update or delete.
    pub fn kind(&self) -> CommandKind {
        // Both zero is a delete too: `git push origin :gone` sends it for
        // a ref the remote does not have.
        if self.new.is_zero() {
            CommandKind::Delete
        } else if self.old.is_zero() {
            CommandKind::Create
        } else {
            CommandKind::Update
        }
    }
}

/// The capabilities the client sent with its first command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    words: Vec<String>,
    object_format: ObjectFormat,
    side_band_64k: bool,
    side_band: bool,
    report_status: bool,
    report_status_v2: bool,
    push_options: bool,
    atomic: bool,
    quiet: bool,
}

impl Capabilities {
    /// Parses the text after the first command's `\0`.
    fn parse(text: &[u8]) -> Result<Self, ReceivePackError> {
        let mut caps = Capabilities::default();
        // `git push` writes `\0 report-status …`: one leading space.
        let text = text.strip_prefix(b" ").unwrap_or(text);
        if text.is_empty() {
            return Ok(caps);
        }
        // git splits on any whitespace and takes the first of duplicates;
        // one spelling only (git's own: a leading space, then printable
        // words separated by single spaces) leaves no room
        // for the upstream to read the list differently.
        if !text.iter().all(|&b| b == b' ' || b.is_ascii_graphic()) {
            return Err(ReceivePackError::BadCapabilities);
        }
        let text = String::from_utf8_lossy(text);
        let mut object_format = None;
        for word in text.split(' ') {
            if word.is_empty() {
                return Err(ReceivePackError::BadCapabilities);
            }
            let (name, value) = match word.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (word, None),
            };
            match name {
                "push-cert" => return Err(ReceivePackError::PushCert),
                "object-format" => {
                    if object_format.is_some() {
                        return Err(ReceivePackError::BadCapabilities);
                    }
                    object_format = Some(match value {
                        Some("sha1") => ObjectFormat::Sha1,
                        Some("sha256") => ObjectFormat::Sha256,
                        _ => return Err(ReceivePackError::UnknownObjectFormat),
                    });
                }
                // git reads `push-options=…` as `push-options` too, and
                // then expects the options after the commands.
                "push-options" => caps.push_options = true,
                "side-band-64k" => caps.side_band_64k = true,
                "side-band" => caps.side_band = true,
                "report-status" => caps.report_status = true,
                "report-status-v2" => caps.report_status_v2 = true,
                "atomic" => caps.atomic = true,
                "quiet" => caps.quiet = true,
                _ => {}
            }
            caps.words.push(word.to_owned());
        }
        caps.object_format = object_format.unwrap_or_default();
        Ok(caps)
    }

    /// Every capability word as sent, e.g. `agent=git/2.47.3`.
    pub fn words(&self) -> &[String] {
        &self.words
    }
    /// The object format (sha1 when the capability was not sent).
    pub fn object_format(&self) -> ObjectFormat {
        self.object_format
    }
    /// `side-band-64k` was requested: the answer is multiplexed.
    pub fn side_band_64k(&self) -> bool {
        self.side_band_64k
    }
    /// `side-band` (small frames) was requested. `git receive-pack` ignores
    /// it: only `side-band-64k` makes it multiplex.
    pub fn side_band(&self) -> bool {
        self.side_band
    }
    /// `report-status` was requested.
    pub fn report_status(&self) -> bool {
        self.report_status
    }
    /// `report-status-v2` was requested.
    pub fn report_status_v2(&self) -> bool {
        self.report_status_v2
    }
    /// `push-options` was requested: options follow the commands.
    pub fn push_options(&self) -> bool {
        self.push_options
    }
    /// `atomic` was requested.
    pub fn atomic(&self) -> bool {
        self.atomic
    }
    /// `quiet` was requested.
    pub fn quiet(&self) -> bool {
        self.quiet
    }
}

/// A push's command list, read in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivePackRequest {
    shallow: Vec<Oid>,
    commands: Vec<Command>,
    capabilities: Capabilities,
    push_options: Vec<String>,
    prefix_len: usize,
}

impl ReceivePackRequest {
    /// The `shallow` lines' ids (a push from a shallow clone).
    pub fn shallow(&self) -> &[Oid] {
        &self.shallow
    }
    /// The commands, in order; never empty.
    pub fn commands(&self) -> &[Command] {
        &self.commands
    }
    /// The first command's capabilities.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }
    /// The push options (`git push -o`), lossily as text.
    pub fn push_options(&self) -> &[String] {
        &self.push_options
    }
    /// How many bytes of the body came before the pack: the command list,
    /// its flush and the push options.
    pub fn prefix_len(&self) -> usize {
        self.prefix_len
    }
}

/// A refusal from [`ReceivePackReader`], with the first command's
/// capabilities when the reader got that far, so the refusal can be
/// written the way the client asked (`side-band-64k`, a status report).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct ReadError {
    error: ReceivePackError,
    capabilities: Option<Capabilities>,
}

impl ReadError {
    /// Why the request is refused.
    pub fn error(&self) -> ReceivePackError {
        self.error
    }

    /// The capabilities, if the first command was reached.
    pub fn capabilities(&self) -> Option<&Capabilities> {
        self.capabilities.as_ref()
    }
}

impl From<ReadError> for ReceivePackError {
    fn from(error: ReadError) -> Self {
        error.error
    }
}

/// A whole receive-pack body, read by [`parse_receive_pack`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceivePack {
    /// Exactly `0000`: git's probe before a large push (`http.postBuffer`),
    /// which carries no command and is forwarded.
    Probe,
    /// A push.
    Push(ReceivePackRequest),
}

/// A body that is exactly `0000`: git's probe before a large push
/// (`http.postBuffer`), which carries no command and is forwarded as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe;

/// What [`ReceivePackReader::feed`] got to.
#[derive(Debug)]
pub enum Progress {
    /// Not yet at the end of the command list: feed the next chunk, or call
    /// [`ReceivePackReader::finish`] when the body ended.
    NeedMore(ReceivePackReader),
    /// The command list is complete.
    Complete {
        /// The commands and capabilities.
        request: ReceivePackRequest,
        /// Where the pack starts in the chunk just fed: bytes before it
        /// belong to the command list, it and every later byte to the pack.
        pack_start: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Commands,
    PushOptions,
    /// A flush came first: a probe if the body ends here.
    LoneFlush,
}

/// Reads a receive-pack body's command list from chunks split anywhere.
/// It holds at most one pkt-line (64 KiB) besides what it parsed, and
/// refuses as soon as a limit is passed.
///
/// ```
/// use signet_git::{Probe, Progress, ReceivePackReader};
///
/// let mut body = Vec::new();
/// let line = format!("{} {} refs/heads/old\0 report-status side-band-64k", "f".repeat(40), "0".repeat(40));
/// signet_git::pkt::write_pkt(&mut body, line.as_bytes());
/// body.extend_from_slice(b"0000");
/// body.extend_from_slice(b"PACK...");
///
/// // Frames as they come off the wire, split anywhere.
/// let mut frames = body.chunks(7);
/// let mut reader = ReceivePackReader::new(Default::default());
/// let (request, sent) = loop {
///     match frames.next() {
///         Some(frame) => match reader.feed(frame)? {
///             Progress::NeedMore(more) => reader = more,
///             // Decide now; forward what was read, `frame[pack_start..]`
///             // and the frames after it.
///             Progress::Complete { request, pack_start } => break (request, &frame[pack_start..]),
///         },
///         // Only `0000` may end here (git's probe, forwarded as it is).
///         None => {
///             let _probe: Probe = reader.finish()?;
///             unreachable!("not this body");
///         }
///     }
/// };
/// assert_eq!(request.commands()[0].refname().as_str(), "refs/heads/old");
/// assert!(request.capabilities().side_band_64k());
/// assert_eq!(request.prefix_len(), body.len() - 7);
/// assert!(b"PACK...".starts_with(sent));
/// # Ok::<(), signet_git::ReadError>(())
/// ```
#[derive(Debug)]
pub struct ReceivePackReader {
    limits: Limits,
    state: State,
    /// The pkt-line being read, header included.
    pending: Vec<u8>,
    consumed: usize,
    pkts: usize,
    shallow: Vec<Oid>,
    /// Shallow ids are checked against the object format once the first
    /// command's capabilities name it; until then they are kept as read.
    shallow_raw: Vec<Vec<u8>>,
    commands: Vec<Command>,
    capabilities: Option<Capabilities>,
    push_options: Vec<String>,
}

impl ReceivePackReader {
    /// A reader at the start of a body.
    pub fn new(limits: Limits) -> Self {
        ReceivePackReader {
            limits,
            state: State::Commands,
            pending: Vec::new(),
            consumed: 0,
            pkts: 0,
            shallow: Vec::new(),
            shallow_raw: Vec::new(),
            commands: Vec::new(),
            capabilities: None,
            push_options: Vec::new(),
        }
    }

    /// Reads the next chunk of the body.
    pub fn feed(mut self, chunk: &[u8]) -> Result<Progress, ReadError> {
        match self.read(chunk) {
            Ok(Some((request, pack_start))) => Ok(Progress::Complete {
                request,
                pack_start,
            }),
            Ok(None) => Ok(Progress::NeedMore(self)),
            Err(error) => Err(self.refused(error)),
        }
    }

    /// The body ended before the command list was complete: only a body
    /// that is exactly `0000` (git's probe) is acceptable.
    pub fn finish(mut self) -> Result<Probe, ReadError> {
        if self.state == State::LoneFlush {
            Ok(Probe)
        } else {
            Err(self.refused(ReceivePackError::Truncated))
        }
    }

    fn refused(&mut self, error: ReceivePackError) -> ReadError {
        ReadError {
            error,
            capabilities: self.capabilities.take(),
        }
    }

    /// The command list and where the pack starts in `chunk`, once read.
    fn read(
        &mut self,
        chunk: &[u8],
    ) -> Result<Option<(ReceivePackRequest, usize)>, ReceivePackError> {
        let mut at = 0;
        while at < chunk.len() {
            if self.state == State::LoneFlush {
                return Err(ReceivePackError::NoCommands);
            }
            let rest = &chunk[at..];
            let need = if self.pending.len() < 4 {
                4 - self.pending.len()
            } else {
                match header(&self.pending)? {
                    PktHeader::Data(len) => 4 + len - self.pending.len(),
                    _ => 0,
                }
            };
            let take = need.min(rest.len());
            if self.consumed + need > self.limits.max_prefix_bytes {
                return Err(ReceivePackError::PrefixTooLarge);
            }
            self.pending.extend_from_slice(&rest[..take]);
            self.consumed += take;
            at += take;
            if self.pending.len() < 4 {
                continue;
            }
            let header = header(&self.pending)?;
            if let PktHeader::Data(len) = header {
                if self.pending.len() < 4 + len {
                    // The header read, the payload to come: checks the
                    // limit for the whole line before buffering it.
                    if self.consumed + (4 + len - self.pending.len()) > self.limits.max_prefix_bytes
                    {
                        return Err(ReceivePackError::PrefixTooLarge);
                    }
                    continue;
                }
            }
            self.pkts += 1;
            if self.pkts > self.limits.max_pkts {
                return Err(ReceivePackError::TooManyPkts);
            }
            let pkt = std::mem::take(&mut self.pending);
            if self.line(header, &pkt[4..])? {
                let request = ReceivePackRequest {
                    shallow: std::mem::take(&mut self.shallow),
                    commands: std::mem::take(&mut self.commands),
                    capabilities: self.capabilities.take().unwrap_or_default(),
                    push_options: std::mem::take(&mut self.push_options),
                    prefix_len: self.consumed,
                };
                return Ok(Some((request, at)));
            }
        }
        Ok(None)
    }

    /// Takes one complete pkt-line; true when the command list ended.
    fn line(&mut self, header: PktHeader, payload: &[u8]) -> Result<bool, ReceivePackError> {
        match (self.state, header) {
            (_, PktHeader::Delim | PktHeader::ResponseEnd) => {
                Err(ReceivePackError::UnexpectedSpecialPkt)
            }
            (State::Commands, PktHeader::Flush) => {
                if !self.commands.is_empty() {
                    if self.capabilities.as_ref().is_some_and(|c| c.push_options) {
                        self.state = State::PushOptions;
                        return Ok(false);
                    }
                    return Ok(true);
                }
                if !self.shallow_raw.is_empty() {
                    return Err(ReceivePackError::NoCommands);
                }
                self.state = State::LoneFlush;
                Ok(false)
            }
            (State::Commands, PktHeader::Data(_)) => {
                self.command_line(chomp(payload))?;
                Ok(false)
            }
            (State::PushOptions, PktHeader::Flush) => Ok(true),
            (State::PushOptions, PktHeader::Data(_)) => {
                self.push_options
                    .push(String::from_utf8_lossy(chomp(payload)).into_owned());
                Ok(false)
            }
            (State::LoneFlush, _) => Err(ReceivePackError::NoCommands),
        }
    }

    fn command_line(&mut self, line: &[u8]) -> Result<(), ReceivePackError> {
        if line.is_empty() {
            return Err(ReceivePackError::EmptyLine);
        }
        let (line, caps) = match line.iter().position(|&b| b == 0) {
            Some(nul) => (&line[..nul], Some(&line[nul + 1..])),
            None => (line, None),
        };
        if line == b"push-cert" {
            return Err(ReceivePackError::PushCert);
        }
        if let Some(oid) = line.strip_prefix(b"shallow ") {
            if !self.commands.is_empty() {
                return Err(ReceivePackError::ShallowAfterCommands);
            }
            if caps.is_some() {
                return Err(ReceivePackError::BadCommand);
            }
            self.shallow_raw.push(oid.to_vec());
            return Ok(());
        }
        if self.commands.is_empty() {
            let caps = match caps {
                Some(caps) if caps.contains(&0) => return Err(ReceivePackError::BadCapabilities),
                Some(caps) => Capabilities::parse(caps)?,
                None => Capabilities::default(),
            };
            let format = caps.object_format;
            self.shallow = std::mem::take(&mut self.shallow_raw)
                .iter()
                .map(|oid| Oid::parse(oid, format))
                .collect::<Result<_, _>>()?;
            self.capabilities = Some(caps);
        } else if caps.is_some() {
            return Err(ReceivePackError::CapabilitiesNotFirst);
        }
        if self.commands.len() >= self.limits.max_commands {
            return Err(ReceivePackError::TooManyCommands);
        }
        let format = self
            .capabilities
            .as_ref()
            .map(|c| c.object_format)
            .unwrap_or_default();
        let command = parse_command(line, format)?;
        self.commands.push(command);
        Ok(())
    }
}

fn header(pending: &[u8]) -> Result<PktHeader, ReceivePackError> {
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&pending[..4]);
    parse_header(bytes).ok_or(ReceivePackError::BadPktLength)
}

/// The line without one trailing newline, as git reads it.
fn chomp(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

fn parse_command(line: &[u8], format: ObjectFormat) -> Result<Command, ReceivePackError> {
    // Hex ids hold no space, so splitting at the first two spaces accepts
    // exactly the lines git's fixed offsets (`line[hex]`, `line[2 * hex +
    // 1]`) accept, and names an id of the wrong length as such.
    let mut fields = line.splitn(3, |&b| b == b' ');
    let (Some(old), Some(new), Some(name)) = (fields.next(), fields.next(), fields.next()) else {
        return Err(ReceivePackError::BadCommand);
    };
    let old = Oid::parse(old, format)?;
    let new = Oid::parse(new, format)?;
    let name = std::str::from_utf8(name).map_err(|_| ReceivePackError::RefNotUtf8)?;
    let refname = RefName::parse(name).map_err(ReceivePackError::BadRefName)?;
    Ok(Command { old, new, refname })
}

/// Reads a whole receive-pack body (or as much of one as is at hand: a
/// body cut inside its command list is [`ReceivePackError::Truncated`]).
/// The pack, if any, is `body[request.prefix_len()..]`.
pub fn parse_receive_pack(body: &[u8], limits: Limits) -> Result<ReceivePack, ReceivePackError> {
    match ReceivePackReader::new(limits).feed(body)? {
        Progress::NeedMore(reader) => {
            reader.finish()?;
            Ok(ReceivePack::Probe)
        }
        Progress::Complete { request, .. } => Ok(ReceivePack::Push(request)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pkt::write_pkt;
    use ReceivePackError as E;

    const OLD: &str = "1111111111111111111111111111111111111111";
    const NEW: &str = "2222222222222222222222222222222222222222";
    const ZERO: &str = "0000000000000000000000000000000000000000";

    fn body(lines: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for line in lines {
            if *line == "FLUSH" {
                out.extend_from_slice(b"0000");
            } else {
                write_pkt(&mut out, line.as_bytes());
            }
        }
        out
    }

    fn parse(body: &[u8]) -> Result<ReceivePack, ReceivePackError> {
        parse_receive_pack(body, Limits::default())
    }

    fn push(body: &[u8]) -> ReceivePackRequest {
        match parse(body) {
            Ok(ReceivePack::Push(request)) => request,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_push_reads_commands_capabilities_and_where_the_pack_starts() {
        let mut bytes = body(&[
            &format!("{ZERO} {NEW} refs/heads/new\0report-status-v2 side-band-64k quiet atomic agent=git/2.47.3 object-format=sha1"),
            &format!("{OLD} {NEW} refs/heads/main"),
            &format!("{OLD} {ZERO} refs/tags/gone\n"),
            "FLUSH",
        ]);
        let prefix = bytes.len();
        bytes.extend_from_slice(b"PACK\x00\x00\x00\x02");
        let request = push(&bytes);
        assert_eq!(request.prefix_len(), prefix);
        let kinds: Vec<_> = request.commands().iter().map(Command::kind).collect();
        assert_eq!(
            kinds,
            [
                CommandKind::Create,
                CommandKind::Update,
                CommandKind::Delete
            ]
        );
        assert_eq!(request.commands()[2].refname().as_str(), "refs/tags/gone");
        let gone = push(&body(&[
            &format!("{ZERO} {ZERO} refs/heads/never-there"),
            "FLUSH",
        ]));
        assert_eq!(gone.commands()[0].kind(), CommandKind::Delete);
        assert_eq!(request.commands()[1].old().as_str(), OLD);
        assert_eq!(request.commands()[1].new_oid().as_str(), NEW);
        let caps = request.capabilities();
        assert!(caps.report_status_v2() && !caps.report_status());
        assert!(caps.side_band_64k() && !caps.side_band());
        assert!(caps.quiet() && caps.atomic() && !caps.push_options());
        assert_eq!(caps.object_format(), ObjectFormat::Sha1);
        assert_eq!(caps.words().len(), 6);
    }

    #[test]
    fn shallow_lines_and_push_options_come_before_the_pack() {
        let mut bytes = body(&[
            &format!("shallow {OLD}\n"),
            &format!("shallow {NEW}\n"),
            &format!("{OLD} {NEW} refs/heads/main\0report-status push-options"),
            "FLUSH",
            "ci.skip",
            "merge_request.create\n",
            "FLUSH",
        ]);
        let prefix = bytes.len();
        bytes.extend_from_slice(b"PACK");
        let request = push(&bytes);
        assert_eq!(request.prefix_len(), prefix);
        assert_eq!(request.shallow().len(), 2);
        assert_eq!(request.push_options(), ["ci.skip", "merge_request.create"]);
    }

    #[test]
    fn sha256_ids_are_64_digits_and_sha1_ids_then_refused() {
        let (old, new) = ("a".repeat(64), "b".repeat(64));
        let request = push(&body(&[
            &format!("shallow {}", "c".repeat(64)),
            &format!("{old} {new} refs/heads/main\0object-format=sha256"),
            "FLUSH",
        ]));
        assert_eq!(request.capabilities().object_format(), ObjectFormat::Sha256);
        assert_eq!(request.commands()[0].new_oid().as_str(), new);
        for bad in [
            body(&[
                &format!("{OLD} {NEW} refs/heads/main\0object-format=sha256"),
                "FLUSH",
            ]),
            body(&[&format!("{old} {new} refs/heads/main"), "FLUSH"]),
            body(&[
                &format!("{old} {new} refs/heads/main\0object-format=sha1"),
                "FLUSH",
            ]),
            body(&[
                &format!("shallow {OLD}"),
                &format!("{old} {new} refs/heads/main\0object-format=sha256"),
                "FLUSH",
            ]),
        ] {
            assert_eq!(parse(&bad), Err(E::BadOid));
        }
    }

    #[test]
    fn uppercase_or_non_hex_ids_are_refused() {
        for (old, new) in [
            (OLD.to_uppercase().replace('1', "A"), NEW.to_owned()),
            (OLD.to_owned(), format!("{}g", &NEW[1..])),
            (OLD.to_owned(), format!("{}+", &NEW[1..])),
            (OLD[1..].to_owned(), NEW.to_owned()),
            (format!("{OLD}1"), NEW.to_owned()),
        ] {
            let bytes = body(&[&format!("{old} {new} refs/heads/main"), "FLUSH"]);
            assert_eq!(parse(&bytes), Err(E::BadOid), "{old} {new}");
        }
    }

    #[test]
    fn bad_pkt_lengths_are_refused() {
        for bytes in [
            &b"0003"[..],
            b"0002",
            b"0001",
            b"fff1",
            b"ffff",
            b"00A0",
            b"zzzz",
            b"-001",
        ] {
            let got = parse(bytes);
            assert!(
                matches!(got, Err(E::BadPktLength | E::UnexpectedSpecialPkt)),
                "{bytes:?}: {got:?}"
            );
        }
        assert_eq!(parse(b"0003"), Err(E::BadPktLength));
        assert_eq!(parse(b"0001"), Err(E::UnexpectedSpecialPkt));
    }

    #[test]
    fn a_body_ending_inside_the_command_list_is_truncated() {
        let full = body(&[&format!("{OLD} {NEW} refs/heads/main"), "FLUSH"]);
        for cut in 0..full.len() {
            assert_eq!(parse(&full[..cut]), Err(E::Truncated), "cut at {cut}");
        }
    }

    #[test]
    fn a_lone_flush_is_the_probe_and_nothing_may_follow_it() {
        assert_eq!(parse(b"0000"), Ok(ReceivePack::Probe));
        assert_eq!(parse(b"00000000"), Err(E::NoCommands));
        assert_eq!(parse(b"0000PACK"), Err(E::NoCommands));
        let shallow_only = body(&[&format!("shallow {OLD}"), "FLUSH"]);
        assert_eq!(parse(&shallow_only), Err(E::NoCommands));
    }

    #[test]
    fn push_certificates_are_refused_as_line_or_capability() {
        let cert = body(&["push-cert\0report-status", "certificate version 0.1\n"]);
        assert_eq!(parse(&cert), Err(E::PushCert));
        let cap = body(&[
            &format!("{OLD} {NEW} refs/heads/main\0report-status push-cert=123"),
            "FLUSH",
        ]);
        assert_eq!(parse(&cap), Err(E::PushCert));
    }

    #[test]
    fn invalid_ref_names_are_refused() {
        for (name, why) in [
            ("refs/heads/a..b", E::BadRefName(RefNameError::DoubleDot)),
            ("main", E::BadRefName(RefNameError::NotUnderRefs)),
            ("refs/heads/x.lock", E::BadRefName(RefNameError::LockSuffix)),
            (
                "refs/heads/a b",
                E::BadRefName(RefNameError::ForbiddenCharacter),
            ),
            ("", E::BadRefName(RefNameError::EmptyComponent)),
        ] {
            let bytes = body(&[&format!("{OLD} {NEW} {name}"), "FLUSH"]);
            assert_eq!(parse(&bytes), Err(why), "{name:?}");
        }
        let mut latin1 = Vec::new();
        write_pkt(
            &mut latin1,
            format!("{OLD} {NEW} refs/heads/\u{e9}").as_bytes(),
        );
        let last = latin1.len() - 2;
        latin1.splice(last.., [0xe9]);
        let len = format!("{:04x}", latin1.len());
        latin1[..4].copy_from_slice(len.as_bytes());
        latin1.extend_from_slice(b"0000");
        assert_eq!(parse(&latin1), Err(E::RefNotUtf8));
    }

    #[test]
    fn malformed_lines_and_capabilities_are_refused() {
        for (lines, why) in [
            (vec![format!("{OLD} {NEW}"), "FLUSH".into()], E::BadCommand),
            (vec![format!("{OLD}"), "FLUSH".into()], E::BadCommand),
            (
                vec![format!("{OLD}  {NEW} refs/heads/a"), "FLUSH".into()],
                E::BadOid,
            ),
            (vec!["".into(), "FLUSH".into()], E::EmptyLine),
            (vec!["\n".into(), "FLUSH".into()], E::EmptyLine),
            (
                vec![
                    format!("{OLD} {NEW} refs/heads/a\0report-status  quiet"),
                    "FLUSH".into(),
                ],
                E::BadCapabilities,
            ),
            (
                vec![
                    format!("{OLD} {NEW} refs/heads/a\0report-status\tquiet"),
                    "FLUSH".into(),
                ],
                E::BadCapabilities,
            ),
            (
                vec![format!("{OLD} {NEW} refs/heads/a\0  quiet"), "FLUSH".into()],
                E::BadCapabilities,
            ),
            (
                vec![format!("{OLD} {NEW} refs/heads/a\0quiet "), "FLUSH".into()],
                E::BadCapabilities,
            ),
            (
                vec![
                    format!("{OLD} {NEW} refs/heads/a\0quiet\0more"),
                    "FLUSH".into(),
                ],
                E::BadCapabilities,
            ),
            (
                vec![
                    format!("{OLD} {NEW} refs/heads/a\0object-format=sha1 object-format=sha256"),
                    "FLUSH".into(),
                ],
                E::BadCapabilities,
            ),
            (
                vec![
                    format!("{OLD} {NEW} refs/heads/a\0object-format=md5"),
                    "FLUSH".into(),
                ],
                E::UnknownObjectFormat,
            ),
            (
                vec![
                    format!("{OLD} {NEW} refs/heads/a\0object-format"),
                    "FLUSH".into(),
                ],
                E::UnknownObjectFormat,
            ),
            (
                vec![
                    format!("{OLD} {NEW} refs/heads/a"),
                    format!("{OLD} {NEW} refs/heads/b\0quiet"),
                    "FLUSH".into(),
                ],
                E::CapabilitiesNotFirst,
            ),
            (
                vec![
                    format!("{OLD} {NEW} refs/heads/a"),
                    format!("shallow {OLD}"),
                    "FLUSH".into(),
                ],
                E::ShallowAfterCommands,
            ),
            (
                vec![format!("shallow {OLD}\0quiet"), "FLUSH".into()],
                E::BadCommand,
            ),
        ] {
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            assert_eq!(parse(&body(&lines)), Err(why), "{lines:?}");
        }
        let mut delim = body(&[
            &format!("{OLD} {NEW} refs/heads/a\0push-options"),
            "FLUSH",
            "opt",
        ]);
        delim.extend_from_slice(b"0001");
        assert_eq!(parse(&delim), Err(E::UnexpectedSpecialPkt));
    }

    #[test]
    fn a_push_over_the_limits_is_refused_before_it_is_read() {
        let limits = Limits {
            max_commands: 3,
            max_prefix_bytes: 1000,
            max_pkts: 6,
        };
        let line = |i: usize| format!("{OLD} {NEW} refs/heads/b{i}");
        let four: Vec<String> = (0..4).map(line).collect();
        let mut lines: Vec<&str> = four.iter().map(String::as_str).collect();
        lines.push("FLUSH");
        assert_eq!(
            parse_receive_pack(&body(&lines), limits),
            Err(E::TooManyCommands)
        );
        let shallow = format!("shallow {OLD}");
        let many = body(&[
            &shallow, &shallow, &shallow, &shallow, &shallow, &shallow, &shallow,
        ]);
        assert_eq!(parse_receive_pack(&many, limits), Err(E::TooManyPkts));
        // A header announcing a line past the limit is refused at once,
        // before its payload arrives.
        let announce = format!("{:04x}", 1001);
        assert!(matches!(
            ReceivePackReader::new(limits).feed(announce.as_bytes()),
            Err(e) if e.error() == E::PrefixTooLarge && e.capabilities().is_none()
        ));
        let big = body(&[
            &format!("{OLD} {NEW} refs/heads/{}", "x".repeat(900)),
            "FLUSH",
        ]);
        assert_eq!(parse_receive_pack(&big, limits), Err(E::PrefixTooLarge));
        // The default limits hold 1,000 commands and refuse the next one.
        let thousand: Vec<String> = (0..1001).map(line).collect();
        let mut lines: Vec<&str> = thousand.iter().map(String::as_str).collect();
        lines.push("FLUSH");
        assert_eq!(parse(&body(&lines)), Err(E::TooManyCommands));
        assert_eq!(
            push(&body(&[&lines[..1000], &["FLUSH"]].concat()))
                .commands()
                .len(),
            1000
        );
    }

    #[test]
    fn a_refusal_after_the_first_command_keeps_its_capabilities() {
        let bytes = body(&[
            &format!("{OLD} {NEW} refs/heads/a..b\0 report-status side-band-64k"),
            "FLUSH",
        ]);
        match ReceivePackReader::new(Limits::default()).feed(&bytes) {
            Err(e) => {
                assert_eq!(e.error(), E::BadRefName(RefNameError::DoubleDot));
                assert!(e.capabilities().is_some_and(Capabilities::side_band_64k));
            }
            Ok(progress) => panic!("{progress:?}"),
        }
        let cut = body(&[&format!("{OLD} {NEW} refs/heads/a\0 report-status")]);
        let reader = match ReceivePackReader::new(Limits::default()).feed(&cut) {
            Ok(Progress::NeedMore(reader)) => reader,
            other => panic!("{other:?}"),
        };
        match reader.finish() {
            Err(e) => {
                assert_eq!(e.error(), E::Truncated);
                assert!(e.capabilities().is_some_and(Capabilities::report_status));
            }
            Ok(done) => panic!("{done:?}"),
        }
    }

    #[test]
    fn the_pack_start_is_given_in_the_chunk_that_completes_the_list() {
        let mut bytes = body(&[&format!("{OLD} {NEW} refs/heads/main"), "FLUSH"]);
        let prefix = bytes.len();
        bytes.extend_from_slice(b"PACKDATA");
        let (first, second) = bytes.split_at(10);
        let reader = match ReceivePackReader::new(Limits::default()).feed(first) {
            Ok(Progress::NeedMore(reader)) => reader,
            other => panic!("{other:?}"),
        };
        match reader.feed(second) {
            Ok(Progress::Complete {
                request,
                pack_start,
            }) => {
                assert_eq!(request.prefix_len(), prefix);
                assert_eq!(&second[pack_start..], b"PACKDATA");
            }
            other => panic!("{other:?}"),
        }
    }
}
