//! The crate against the real `git` (the test command installs Debian's):
//! git's own requests parse, and the refusals it is answered with are
//! printed the way the issue promises. A small HTTP server on
//! `127.0.0.1:0` answers `info/refs` with what `git <service>
//! --advertise-refs --stateless-rpc` prints for a real bare repository,
//! and every POST with this crate's refusal; it records each POST body.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use signet_git::{
    check_ref_name, error_pkt, parse_receive_pack, push_error, push_refusal, service_announcement,
    GitRule, GitRules, ObjectFormat, Progress, PushDecision, ReadError, ReceivePack,
    ReceivePackReader, ReceivePackRequest, Repo, Service,
};

fn git(dir: &Path, args: &[&str]) -> Output {
    let output = Command::new("git")
        .current_dir(dir)
        .args(args)
        // No user or system config may change what git sends.
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_PROTOCOL")
        .output()
        .unwrap_or_else(|e| panic!("git is installed (scripts/test installs it): {e}"));
    output
}

fn git_ok(dir: &Path, args: &[&str]) -> Vec<u8> {
    let output = git(dir, args);
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A bare upstream (empty, or with one commit on `main`) and a work clone
/// with a commit on `main` and on `bot/x`.
struct Repos {
    _dir: tempfile::TempDir,
    bare: PathBuf,
    work: PathBuf,
}

fn repos(object_format: &str, upstream_has_commit: bool) -> Repos {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let root = dir.path().to_path_buf();
    let format = format!("--object-format={object_format}");
    git_ok(
        &root,
        &[
            "init",
            "-q",
            "--bare",
            &format,
            "-b",
            "main",
            "upstream.git",
        ],
    );
    git_ok(&root, &["init", "-q", &format, "-b", "main", "work"]);
    let work = root.join("work");
    std::fs::write(work.join("file"), "one\n").unwrap_or_else(|e| panic!("{e}"));
    git_ok(&work, &["add", "file"]);
    git_ok(&work, &["commit", "-q", "-m", "one"]);
    git_ok(&work, &["branch", "bot/x"]);
    if upstream_has_commit {
        let bare = root.join("upstream.git");
        let bare = bare.to_string_lossy();
        git_ok(&work, &["push", "-q", &bare, "main", "bot/x"]);
    }
    Repos {
        bare: root.join("upstream.git"),
        work,
        _dir: dir,
    }
}

/// How the stand-in server answers a POST.
#[derive(Clone, Copy)]
enum Answer {
    /// Parse the push, decide it by the rules, answer with the refusal.
    Policy,
    /// `ERR <message>` to upload-pack.
    UploadPackError,
    /// [`push_error`], as for a request that cannot be read.
    ReceivePackError,
}

struct Server {
    url: String,
    posts: Arc<Mutex<Vec<Vec<u8>>>>,
}

/// Serves `bare` as `acme/app.git` until the test ends. `strip` is removed
/// from the advertisement's capabilities (to make git not ask for them).
fn serve(bare: &Path, rules: GitRules, answer: Answer, strip: &'static str) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    let posts = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&posts);
    let bare = bare.to_path_buf();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            handle(stream, &bare, &rules, answer, strip, &recorded);
        }
    });
    Server {
        url: format!("http://127.0.0.1:{port}/acme/app.git"),
        posts,
    }
}

fn handle(
    stream: TcpStream,
    bare: &Path,
    rules: &GitRules,
    answer: Answer,
    strip: &str,
    posts: &Mutex<Vec<Vec<u8>>>,
) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let (mut length, mut chunked, mut protocol) = (0usize, false, None);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or((&line, ""));
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse().unwrap_or(0),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "git-protocol" => protocol = Some(value.to_owned()),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            if reader.read_line(&mut size).unwrap_or(0) == 0 {
                break;
            }
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; size + 2];
            if reader.read_exact(&mut chunk).is_err() || size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body.resize(length, 0);
        if reader.read_exact(&mut body).is_err() {
            return;
        }
    }
    let target = request_line.split(' ').nth(1).unwrap_or("");
    let (content_type, response) = if let Some(query) =
        target.strip_prefix("/acme/app.git/info/refs?service=")
    {
        let Some(service) = Service::from_name(query) else {
            return;
        };
        let mut advertise = Command::new("git");
        advertise
            .args([
                &service.as_str()[4..],
                "--advertise-refs",
                "--stateless-rpc",
            ])
            .arg(bare);
        if let Some(protocol) = &protocol {
            advertise.env("GIT_PROTOCOL", protocol);
        }
        let refs = advertise.output().map(|o| o.stdout).unwrap_or_default();
        let refs = String::from_utf8_lossy(&refs).replace(strip.trim_start_matches("unknown"), "");
        let mut body = Vec::new();
        // A v2 answer has no `# service=` line (http-backend writes none).
        if !refs.starts_with("000eversion 2") {
            body = service_announcement(service);
        }
        // Stripping a capability changed one line's length: re-frame.
        body.extend(reframe(refs.as_bytes()));
        (
            format!("application/x-{}-advertisement", service.as_str()),
            body,
        )
    } else if target == "/acme/app.git/git-receive-pack" {
        posts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(body.clone());
        if let Answer::ReceivePackError = answer {
            let message = "INVALID_GIT_REQUEST: the push's command list cannot be read";
            // Read as far as the reader gets; `git` sent a valid list,
            // so the test picks whether the capabilities are known.
            let capabilities = match parse_receive_pack(&body, Default::default()) {
                Ok(ReceivePack::Push(request)) => Some(request.capabilities().clone()),
                _ => None,
            };
            let known = capabilities.as_ref().filter(|_| strip != "unknown");
            let body = push_error(known, message);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/x-git-receive-pack-result\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let mut stream = stream;
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
            return;
        }
        let repo = Repo::parse("acme/app.git").unwrap_or_else(|e| panic!("{e}"));
        // As the proxy will: read the command list off the body as it
        // streams in (frames of 1,000 bytes here), decide, and only then
        // forward, to the real `git receive-pack`, or refuse.
        let mut reader = ReceivePackReader::new(Default::default());
        let mut frames = body.chunks(1000);
        let decided = loop {
            let refused = |e: ReadError| -> ! {
                panic!(
                    "git's own request is refused: {e}: {:?}",
                    String::from_utf8_lossy(&body[..body.len().min(400)])
                )
            };
            match frames.next() {
                Some(frame) => match reader.feed(frame) {
                    Ok(Progress::NeedMore(more)) => reader = more,
                    Ok(Progress::Complete { request, .. }) => break ReceivePack::Push(request),
                    Err(e) => refused(e),
                },
                None => {
                    reader.finish().unwrap_or_else(|e| refused(e));
                    break ReceivePack::Probe;
                }
            }
        };
        let response = match decided {
            ReceivePack::Push(request) => match rules.check_push(&repo, request.commands()) {
                PushDecision::Refused(refused) => push_refusal(
                    request.capabilities(),
                    &refused.ng_reasons(),
                    &format!("FORBIDDEN_BY_POLICY: {}", refused.message()),
                ),
                PushDecision::Allowed => receive_pack(bare, &body),
            },
            // The probe goes through, as it will through the proxy.
            ReceivePack::Probe => receive_pack(bare, &body),
        };
        ("application/x-git-receive-pack-result".to_owned(), response)
    } else if target == "/acme/app.git/git-upload-pack" {
        posts.lock().unwrap_or_else(|e| e.into_inner()).push(body);
        let Answer::UploadPackError = answer else {
            return;
        };
        (
            "application/x-git-upload-pack-result".to_owned(),
            error_pkt("FORBIDDEN_BY_POLICY: no GIT rule of this client allows fetching acme/app"),
        )
    } else {
        return;
    };
    let mut stream = stream;
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
        response.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&response);
}

/// What the real `git receive-pack` answers to `body` (as `git
/// http-backend` runs it).
fn receive_pack(bare: &Path, body: &[u8]) -> Vec<u8> {
    let mut child = Command::new("git")
        .args(["receive-pack", "--stateless-rpc"])
        .arg(bare)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("git receive-pack: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        let body = body.to_vec();
        std::thread::spawn(move || stdin.write_all(&body));
    }
    child
        .wait_with_output()
        .map(|o| o.stdout)
        .unwrap_or_else(|e| panic!("git receive-pack: {e}"))
}

/// pkt-lines with their lengths recomputed (after a capability was cut
/// out of one); the special pkts kept.
fn reframe(mut bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let len = usize::from_str_radix(&String::from_utf8_lossy(&bytes[..4]), 16).unwrap_or(0);
        if len < 4 {
            out.extend_from_slice(&bytes[..4]);
            bytes = &bytes[4..];
            continue;
        }
        // The stripped text shortened this line: it ends at the next
        // newline (every advertisement line ends with one).
        let end = bytes[4..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |p| p + 5);
        let end = end.min(len);
        signet_git::pkt::write_pkt(&mut out, &bytes[4..end]);
        bytes = &bytes[end..];
    }
    out
}

fn rules(texts: &[&str]) -> GitRules {
    GitRules::new(
        texts
            .iter()
            .map(|t| GitRule::parse(t).unwrap_or_else(|e| panic!("{e}")))
            .collect(),
    )
}

fn last_push(server: &Server) -> ReceivePackRequest {
    let posts = server.posts.lock().unwrap_or_else(|e| e.into_inner());
    match posts
        .last()
        .map(|body| parse_receive_pack(body, Default::default()))
    {
        Some(Ok(ReceivePack::Push(request))) => request,
        other => panic!("{other:?}"),
    }
}

fn refs_of(bare: &Path) -> String {
    String::from_utf8_lossy(&git_ok(bare, &["for-each-ref"])).into_owned()
}

const BOT_ONLY: &[&str] = &["GIT push acme/app refs/heads/bot/**"];

#[test]
fn a_refused_push_shows_git_users_the_reason_and_their_allowed_refs_and_fails() {
    let repos = repos("sha1", false);
    let server = serve(&repos.bare, rules(BOT_ONLY), Answer::Policy, "");
    let out = git(&repos.work, &["push", &server.url, "main"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            " ! [remote rejected] main -> main (no GIT push rule of this client allows this ref)"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("remote: FORBIDDEN_BY_POLICY: this push to acme/app is refused by the client's GIT rules; nothing was pushed."),
        "{stderr}"
    );
    assert!(
        stderr.contains("remote: this client may push: refs/heads/bot/**"),
        "{stderr}"
    );
    assert!(
        stderr.contains("remote: this client may delete: nothing"),
        "{stderr}"
    );
    let request = last_push(&server);
    let caps = request.capabilities();
    assert!(caps.side_band_64k() && (caps.report_status() || caps.report_status_v2()));
    assert_eq!(request.commands()[0].refname().as_str(), "refs/heads/main");
    assert_eq!(refs_of(&repos.bare), "");
}

#[test]
fn without_side_band_git_still_shows_each_refs_reason() {
    let repos = repos("sha1", false);
    let server = serve(
        &repos.bare,
        rules(BOT_ONLY),
        Answer::Policy,
        " side-band-64k",
    );
    let out = git(&repos.work, &["push", &server.url, "main"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(!last_push(&server).capabilities().side_band_64k());
    assert!(
        stderr.contains(
            "! [remote rejected] main -> main (no GIT push rule of this client allows this ref)"
        ),
        "{stderr}"
    );
}

#[test]
fn one_refused_ref_rejects_every_ref_of_the_push() {
    let repos = repos("sha1", true);
    let before = refs_of(&repos.bare);
    git_ok(&repos.work, &["commit", "-q", "--allow-empty", "-m", "two"]);
    git_ok(&repos.work, &["branch", "-f", "bot/x", "HEAD"]);
    git_ok(&repos.work, &["tag", "v1"]);
    let server = serve(
        &repos.bare,
        rules(&[
            "GIT push acme/app refs/heads/bot/**",
            "GIT push acme/app refs/tags/v*",
        ]),
        Answer::Policy,
        "",
    );
    let out = git(
        &repos.work,
        &[
            "push",
            &server.url,
            "bot/x",
            "main",
            "v1",
            ":refs/heads/gone-not-there",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for line in [
        "! [remote rejected] bot/x -> bot/x (push refused as a whole: another ref is not allowed)",
        "! [remote rejected] main -> main (no GIT push rule of this client allows this ref)",
        "! [remote rejected] v1 -> v1 (push refused as a whole: another ref is not allowed)",
        "remote: this client may push: refs/heads/bot/** refs/tags/v*",
    ] {
        assert!(stderr.contains(line), "{line}\n{stderr}");
    }
    // `:gone-not-there` is sent as a delete with both ids zero.
    assert!(
        stderr.contains("! [remote rejected] gone-not-there (no GIT delete rule of this client allows deleting this ref)"),
        "{stderr}"
    );
    assert_eq!(last_push(&server).commands().len(), 4);
    assert_eq!(refs_of(&repos.bare), before);
}

#[test]
fn a_refused_delete_names_the_missing_delete_rule() {
    let repos = repos("sha1", true);
    let server = serve(&repos.bare, rules(BOT_ONLY), Answer::Policy, "");
    let out = git(&repos.work, &["push", &server.url, ":bot/x"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("! [remote rejected] bot/x (no GIT delete rule of this client allows deleting this ref)"),
        "{stderr}"
    );
    // A delete carries no pack: the body ends at the command list.
    let posts = server.posts.lock().unwrap_or_else(|e| e.into_inner());
    let body = posts.last().cloned().unwrap_or_default();
    drop(posts);
    assert_eq!(last_push(&server).prefix_len(), body.len());
}

#[test]
fn a_sha256_push_and_a_shallow_push_parse() {
    let sha256 = repos("sha256", false);
    let server = serve(&sha256.bare, rules(BOT_ONLY), Answer::Policy, "");
    let out = git(&sha256.work, &["push", &server.url, "main"]);
    assert!(!out.status.success());
    let request = last_push(&server);
    assert_eq!(request.capabilities().object_format(), ObjectFormat::Sha256);
    assert_eq!(request.commands()[0].new_oid().as_str().len(), 64);

    let repos = repos("sha1", true);
    let root = repos
        .work
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    git_ok(&repos.work, &["commit", "-q", "--allow-empty", "-m", "two"]);
    git_ok(
        &repos.work,
        &["push", "-q", &repos.bare.to_string_lossy(), "main"],
    );
    let upstream = format!("file://{}", repos.bare.display());
    git_ok(
        &root,
        &["clone", "-q", "--depth", "1", &upstream, "shallow"],
    );
    let shallow = root.join("shallow");
    git_ok(&shallow, &["commit", "-q", "--allow-empty", "-m", "three"]);
    let server = serve(&repos.bare, rules(BOT_ONLY), Answer::Policy, "");
    let out = git(&shallow, &["push", &server.url, "main"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("! [remote rejected] main -> main"),
        "{stderr}"
    );
    assert_eq!(last_push(&server).shallow().len(), 1);
}

#[test]
fn gits_probe_before_a_large_push_is_a_lone_flush() {
    let repos = repos("sha1", false);
    // Incompressible content makes a pack larger than the post buffer.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..200_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[3]
        })
        .collect();
    std::fs::write(repos.work.join("noise"), noise).unwrap_or_else(|e| panic!("{e}"));
    git_ok(&repos.work, &["add", "noise"]);
    git_ok(&repos.work, &["commit", "-q", "-m", "noise"]);
    let server = serve(&repos.bare, rules(BOT_ONLY), Answer::Policy, "");
    let out = git(
        &repos.work,
        &["-c", "http.postBuffer=65536", "push", &server.url, "main"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("! [remote rejected] main -> main"),
        "{stderr}"
    );
    let posts = server
        .posts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    assert_eq!(posts.len(), 2, "the probe, then the push");
    assert_eq!(posts[0], b"0000");
    let request = last_push(&server);
    assert!(
        posts[1].len() > 65536 && request.prefix_len() < 1000,
        "{} {}",
        posts[1].len(),
        request.prefix_len()
    );
    assert!(posts[1][request.prefix_len()..].starts_with(b"PACK"));
}

#[test]
fn an_err_pkt_ends_a_fetch_with_the_message_in_protocol_v0_and_v2() {
    let repos = repos("sha1", true);
    let root = repos
        .work
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    for (version, into) in [("0", "v0"), ("2", "v2")] {
        let server = serve(&repos.bare, rules(&[]), Answer::UploadPackError, "");
        let out = git(
            &root,
            &[
                "-c",
                &format!("protocol.version={version}"),
                "clone",
                &server.url,
                into,
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains(
                "remote error: FORBIDDEN_BY_POLICY: no GIT rule of this client allows fetching acme/app"
            ),
            "protocol v{version}: {stderr}"
        );
    }
}

#[test]
fn ref_names_are_judged_as_git_check_ref_format_judges_them() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for name in [
        "refs/heads/main",
        "refs/heads/a..b",
        "refs/heads/.x",
        "refs/heads/x.lock",
        "refs/heads/x.lock/y",
        "refs/heads/a@{b",
        "refs/heads/a@b",
        "refs/heads/a b",
        "refs/heads/a~b",
        "refs/heads/a^b",
        "refs/heads/a:b",
        "refs/heads/a?b",
        "refs/heads/a*b",
        "refs/heads/a[b",
        "refs/heads/a\\b",
        "refs/heads/a\tb",
        "refs/heads/a\u{7f}b",
        "refs/heads/x/",
        "refs/heads//x",
        "refs/heads/x.",
        "refs/heads/é",
        "refs/heads/-x",
        "refs/heads/x{y}",
        "refs/tags/v1.0",
        "refs/heads/@",
        "@",
        "refs/x",
        "refs/x/y",
        "refs/heads",
        "heads/main",
        "refs/",
    ] {
        // receive-pack's own rule: under refs/, and the rest passes
        // check-ref-format (without --allow-onelevel).
        let git_accepts = name.strip_prefix("refs/").is_some_and(|rest| {
            git(dir.path(), &["check-ref-format", rest])
                .status
                .success()
        });
        assert_eq!(check_ref_name(name).is_ok(), git_accepts, "{name:?}");
    }
}

#[test]
fn a_push_error_ends_a_push_with_the_message_with_or_without_side_band() {
    let repos = repos("sha1", false);
    // "unknown": side-band negotiated, but the reader did not get to the
    // capabilities.
    for strip in ["", " side-band-64k", "unknown"] {
        let server = serve(&repos.bare, rules(&[]), Answer::ReceivePackError, strip);
        let out = git(&repos.work, &["push", &server.url, "main"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains(
                "remote error: INVALID_GIT_REQUEST: the push's command list cannot be read"
            ),
            "strip {strip:?}: {stderr}"
        );
    }
}

#[test]
fn an_allowed_push_read_frame_by_frame_reaches_the_real_receive_pack_whole() {
    let repos = repos("sha1", true);
    git_ok(
        &repos.bare,
        &["config", "receive.advertisePushOptions", "true"],
    );
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..300_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[5]
        })
        .collect();
    std::fs::write(repos.work.join("noise"), noise).unwrap_or_else(|e| panic!("{e}"));
    git_ok(&repos.work, &["add", "noise"]);
    git_ok(&repos.work, &["commit", "-q", "-m", "noise"]);
    git_ok(&repos.work, &["branch", "-f", "bot/x", "HEAD"]);
    let server = serve(&repos.bare, rules(BOT_ONLY), Answer::Policy, "");
    // A small post buffer: the probe first, then a chunked body.
    let out = git(
        &repos.work,
        &[
            "-c",
            "http.postBuffer=65536",
            "push",
            "--atomic",
            "-o",
            "ci.skip",
            &server.url,
            "bot/x",
            "bot/x:refs/heads/bot/new",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let request = last_push(&server);
    assert_eq!(request.push_options(), ["ci.skip"]);
    assert!(request.capabilities().atomic() && request.capabilities().push_options());
    let head = String::from_utf8_lossy(&git_ok(&repos.work, &["rev-parse", "HEAD"]))
        .trim()
        .to_owned();
    let refs = refs_of(&repos.bare);
    assert!(
        refs.contains(&format!("{head} commit\trefs/heads/bot/new")),
        "{refs}"
    );
    assert!(
        refs.contains(&format!("{head} commit\trefs/heads/bot/x")),
        "{refs}"
    );
    let posts = server
        .posts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    assert_eq!(posts[0], b"0000", "the probe was forwarded too");
}
