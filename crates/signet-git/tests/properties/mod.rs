//! Property tests: the reader never panics and its outcome does not depend
//! on where the body was split; command lists read back as written; ref
//! patterns agree with a plain re-statement of their semantics.

use crate::fuzz_corpus::checks::{encode, git_receive_pack, read_chunked, Outcome, SMALL};
use proptest::prelude::*;
use signet_git::pkt::write_pkt;
use signet_git::{
    parse_receive_pack, CommandKind, GitRule, GitRules, Limits, PushDecision, ReceivePack, Repo,
};

/// A ref-name component git accepts.
fn component() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_-][a-zA-Z0-9._-]{0,8}".prop_filter("git's component rules", |c| {
        !c.ends_with(".lock") && !c.ends_with('.') && !c.contains("..")
    })
}

fn refname() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["heads", "tags", "notes", "pull"]),
        prop::collection::vec(component(), 1..4),
    )
        .prop_map(|(kind, rest)| format!("refs/{kind}/{}", rest.join("/")))
}

#[derive(Debug, Clone)]
struct Push {
    sha256: bool,
    shallow: Vec<u8>,
    commands: Vec<(u8, u8, String)>,
    words: Vec<&'static str>,
    push_options: Option<Vec<String>>,
}

fn oid(byte: u8, sha256: bool) -> String {
    // 0 stands for the zero id; others for a distinct non-zero id.
    let digit = if byte == 0 {
        '0'
    } else {
        char::from(b"123456789abcdef"[usize::from(byte) % 15])
    };
    std::iter::repeat_n(digit, if sha256 { 64 } else { 40 }).collect()
}

fn push() -> impl Strategy<Value = Push> {
    (
        any::<bool>(),
        prop::collection::vec(1u8.., 0..3),
        prop::collection::vec((0u8..4, 0u8..4, refname()), 1..12),
        prop::sample::subsequence(
            vec![
                "report-status",
                "report-status-v2",
                "side-band-64k",
                "side-band",
                "quiet",
                "atomic",
                "agent=git/2.47.3",
                "session-id=x",
            ],
            0..5,
        ),
        prop::option::of(prop::collection::vec("[ -~]{0,12}", 0..4)),
    )
        .prop_map(|(sha256, shallow, commands, words, push_options)| Push {
            sha256,
            shallow,
            // Both ids zero is a delete of a ref the remote lacks.
            commands,
            words,
            push_options,
        })
}

/// The body `git push` would send for `push`, pack included.
fn body_of(push: &Push) -> Vec<u8> {
    let mut out = Vec::new();
    for s in &push.shallow {
        write_pkt(
            &mut out,
            format!("shallow {}\n", oid(*s, push.sha256)).as_bytes(),
        );
    }
    let mut words: Vec<String> = push.words.iter().map(|w| w.to_string()).collect();
    if push.push_options.is_some() {
        words.push("push-options".into());
    }
    if push.sha256 {
        words.push("object-format=sha256".into());
    }
    for (i, (old, new, name)) in push.commands.iter().enumerate() {
        let mut line = format!(
            "{} {} {name}",
            oid(*old, push.sha256),
            oid(*new, push.sha256)
        );
        if i == 0 && !words.is_empty() {
            line.push_str("\0 ");
            line.push_str(&words.join(" "));
        }
        write_pkt(&mut out, line.as_bytes());
    }
    out.extend_from_slice(b"0000");
    if let Some(options) = &push.push_options {
        for option in options {
            write_pkt(&mut out, format!("{option}\n").as_bytes());
        }
        out.extend_from_slice(b"0000");
    }
    out
}

proptest! {
    // 512 cases by default; PROPTEST_CASES runs more.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(512)
    ))]

    #[test]
    fn arbitrary_bytes_never_panic_and_read_alike_however_split(data in prop::collection::vec(any::<u8>(), 0..600)) {
        git_receive_pack(&data);
    }

    #[test]
    fn pkt_framed_noise_reads_alike_however_split(
        seed in any::<u8>(),
        lines in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..90), 0..6),
        flushes in prop::collection::vec(any::<bool>(), 0..6),
    ) {
        let mut data = vec![seed];
        for (line, flush) in lines.iter().zip(flushes.iter().chain(std::iter::repeat(&false))) {
            write_pkt(&mut data, line);
            if *flush {
                data.extend_from_slice(b"0000");
            }
        }
        git_receive_pack(&data);
    }

    #[test]
    fn a_push_reads_back_as_written_in_any_chunks(
        push in push(),
        sizes in prop::collection::vec(1usize..40, 1..6),
        pack in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut body = body_of(&push);
        let prefix = body.len();
        body.extend_from_slice(&pack);
        let request = match parse_receive_pack(&body, Limits::default()) {
            Ok(ReceivePack::Push(request)) => request,
            other => panic!("{other:?}"),
        };
        prop_assert_eq!(request.prefix_len(), prefix);
        prop_assert_eq!(request.commands().len(), push.commands.len());
        for (command, (old, new, name)) in request.commands().iter().zip(&push.commands) {
            prop_assert_eq!(command.refname().as_str(), name.as_str());
            prop_assert_eq!(command.old().as_str(), oid(*old, push.sha256));
            prop_assert_eq!(command.new_oid().as_str(), oid(*new, push.sha256));
            let kind = if *new == 0 { CommandKind::Delete } else if *old == 0 { CommandKind::Create } else { CommandKind::Update };
            prop_assert_eq!(command.kind(), kind);
        }
        prop_assert_eq!(request.shallow().len(), push.shallow.len());
        let caps = request.capabilities();
        prop_assert_eq!(caps.side_band_64k(), push.words.contains(&"side-band-64k"));
        prop_assert_eq!(caps.report_status_v2(), push.words.contains(&"report-status-v2"));
        prop_assert_eq!(caps.push_options(), push.push_options.is_some());
        let options: Vec<String> = push.push_options.clone().unwrap_or_default();
        prop_assert_eq!(request.push_options(), options.as_slice());
        prop_assert_eq!(encode(&request), body[..prefix].to_vec());
        prop_assert_eq!(
            read_chunked(&body, &sizes, Limits::default()),
            Outcome::Push(request.clone(), prefix)
        );
        // And with any byte changed, still no panic and no dependence on
        // the split.
        let mut data = vec![0x80 | sizes[0] as u8];
        data.extend_from_slice(&body);
        git_receive_pack(&data);
        data[0] &= 0x7f;
        git_receive_pack(&data);
        let flip = sizes[0] * 7 % body.len();
        data[1 + flip] ^= 1 << (sizes[0] % 8);
        git_receive_pack(&data);
        prop_assert!(matches!(read_chunked(&body, &sizes, SMALL), Outcome::Push(..) | Outcome::Refused(_)));
    }

    #[test]
    fn ref_patterns_match_as_a_plain_restatement_says(
        pattern in prop::collection::vec(prop::sample::select(vec!["**", "*", "a*", "*b", "a", "b", "a*b"]), 0..5),
        name in prop::collection::vec(prop::sample::select(vec!["a", "b", "ab", "aab", "ba", "x"]), 1..6),
    ) {
        let pattern_text = format!("refs/{}", pattern.join("/")).trim_end_matches('/').to_owned();
        let name_text = format!("refs/{}", name.join("/"));
        let Ok(rule) = GitRule::parse(&format!("GIT push o/r {pattern_text}")) else {
            return Ok(());
        };
        let rules = GitRules::new(vec![rule]);
        let repo = Repo::parse("o/r").map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut body = Vec::new();
        write_pkt(&mut body, format!("{} {} {name_text}", "1".repeat(40), "2".repeat(40)).as_bytes());
        body.extend_from_slice(b"0000");
        let Ok(ReceivePack::Push(request)) = parse_receive_pack(&body, Limits::default()) else {
            return Ok(());
        };
        let allowed = rules.check_push(&repo, request.commands()) == PushDecision::Allowed;
        let parts: Vec<&str> = pattern_text.split('/').skip(1).collect();
        prop_assert_eq!(allowed, reference(&parts, &name), "{} vs {}", pattern_text, name_text);
    }
}

/// The semantics, written recursively and exponentially for clarity.
fn reference(pattern: &[&str], name: &[&str]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((&"**", rest)) => (0..=name.len()).any(|k| reference(rest, &name[k..])),
        Some((glob, rest)) => name.split_first().is_some_and(|(first, tail)| {
            glob_reference(glob.as_bytes(), first.as_bytes()) && reference(rest, tail)
        }),
    }
}

fn glob_reference(glob: &[u8], text: &[u8]) -> bool {
    match glob.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|k| glob_reference(rest, &text[k..])),
        Some((c, rest)) => text.first() == Some(c) && glob_reference(rest, &text[1..]),
    }
}
