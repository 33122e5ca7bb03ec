//! Git smart HTTP for signet-proxy, pure and I/O-free: what the proxy needs
//! to decide a push before the upstream sees it, and to refuse it in words
//! `git` prints.
//!
//! * [`ReceivePackReader`] reads a push's command list from its body,
//!   chunk by chunk, within [`Limits`], and never reads the pack;
//! * [`GitRules`] holds a client's `GIT fetch|push|delete` rules of the
//!   keys file and decides fetches and pushes ([`GitRules::check_push`]);
//! * [`push_refusal`], [`push_error`] and [`error_pkt`] answer in git's
//!   protocol.
//!
//! ```
//! use signet_git::{parse_receive_pack, push_refusal, GitRule, GitRules, PushDecision, ReceivePack, Repo};
//!
//! let rules = GitRules::new(vec![GitRule::parse("GIT push acme/app refs/heads/bot/**")?]);
//! // What `git push origin HEAD:main` sends, pack abridged.
//! let mut body = Vec::new();
//! let command = format!("{} {} refs/heads/main", "0".repeat(40), "1".repeat(40));
//! let capabilities = "report-status side-band-64k agent=git/2.47.3";
//! signet_git::pkt::write_pkt(&mut body, format!("{command}\0{capabilities}").as_bytes());
//! body.extend_from_slice(b"0000PACK...");
//!
//! let ReceivePack::Push(request) = parse_receive_pack(&body, Default::default())? else {
//!     unreachable!("a push, not the probe")
//! };
//! assert_eq!(&body[request.prefix_len()..], b"PACK...");
//! let repo = Repo::parse("acme/app.git")?;
//! let PushDecision::Refused(refused) = rules.check_push(&repo, request.commands()) else {
//!     unreachable!("main is not a bot branch")
//! };
//! // 200 application/x-git-receive-pack-result: git prints
//! // `! [remote rejected] main -> main (no GIT push rule …)` and
//! // `remote: this client may push: refs/heads/bot/**`.
//! let answer = push_refusal(request.capabilities(), &refused.ng_reasons(), &refused.message());
//! assert!(answer.ends_with(b"0000"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod pkt;
mod receive_pack;
mod refname;
mod report;
mod rules;

pub use receive_pack::{
    parse_receive_pack, Capabilities, Command, CommandKind, Limits, ObjectFormat, Oid, Probe,
    Progress, ReadError, ReceivePack, ReceivePackError, ReceivePackReader, ReceivePackRequest,
};
pub use refname::{check_ref_name, RefName, RefNameError};
pub use report::{error_pkt, push_error, push_refusal, service_announcement, Service};
pub use rules::{
    AllowedRefs, GitAction, GitRule, GitRuleError, GitRules, PushDecision, RefPattern, RefRefusal,
    RefVerdict, RefusedPush, Repo, RepoError,
};
