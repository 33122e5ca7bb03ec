//! The keys file's `GIT` rules (issue 17), which sit in a client's `allow`
//! list beside its REST rules:
//!
//! * `GIT fetch <repo>`: clone and fetch the repository;
//! * `GIT push <repo> <ref>`: create and update matching refs (never delete
//!   them), and fetch the repository;
//! * `GIT delete <repo> <ref>`: delete matching refs (only that), and fetch.
//!
//! `<repo>` is `owner/name`; each segment is a literal, compared byte for
//! byte (`Acme/app` is not `acme/app`), or `*`, any one segment. The
//! requested repository loses one trailing `.git` before matching. `<ref>`
//! is a full ref name whose components may hold `*` (any run of characters
//! inside one component, never a `/`) or be `**` (zero or more components):
//! `refs/heads/bot/**`, `refs/tags/v*`.
//!
//! A push is all or nothing: when one of its refs is refused, every ref is
//! reported refused and nothing is forwarded. Whether an update is a force
//! push cannot be known without the repository, so a push rule allows both.
//!
//! Which clients these rules apply to is the proxy's business: a client
//! without `allow` may do anything, as for REST, while one whose `allow`
//! holds no `GIT` rule has an empty [`GitRules`], which refuses everything.

use std::fmt;

use crate::receive_pack::{Command, CommandKind};
use crate::refname::check_components;

/// Why a `GIT` rule does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid allow rule {rule:?}: {why}")]
pub struct GitRuleError {
    rule: String,
    why: String,
}

/// What a rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitAction {
    /// Clone and fetch.
    Fetch,
    /// Create and update refs (and fetch).
    Push,
    /// Delete refs (and fetch).
    Delete,
}

/// A requested repository: `owner/name` with one trailing `.git` dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repo {
    owner: String,
    name: String,
}

/// Why a requested repository path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a repository is owner/name, each of letters, digits, -, _ and . (not . or ..)")]
pub struct RepoError;

impl Repo {
    /// Reads `owner/name` or `owner/name.git` as a request names it. Only
    /// the characters GitHub allows in names are accepted, so nothing a
    /// wildcard matches can mean something else upstream.
    pub fn parse(requested: &str) -> Result<Self, RepoError> {
        let path = requested.strip_suffix(".git").unwrap_or(requested);
        let (owner, name) = path.split_once('/').ok_or(RepoError)?;
        if !valid_segment(owner) || !valid_segment(name) {
            return Err(RepoError);
        }
        Ok(Repo {
            owner: owner.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The owner (user or organisation).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The name, without `.git`.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for Repo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

fn valid_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RepoSegment {
    Any,
    Literal(String),
}

impl RepoSegment {
    fn matches(&self, segment: &str) -> bool {
        match self {
            RepoSegment::Any => true,
            RepoSegment::Literal(literal) => literal == segment,
        }
    }
}

/// A ref pattern: `refs/heads/bot/**`, `refs/tags/v*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefPattern {
    text: String,
    components: Vec<RefComponent>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RefComponent {
    /// `**`: zero or more components.
    Any,
    /// A component, each `*` in it any run of characters.
    Glob(String),
}

impl RefPattern {
    fn parse(text: &str) -> Result<Self, &'static str> {
        let mut components = Vec::new();
        for component in text.split('/') {
            components.push(match component {
                "**" => RefComponent::Any,
                c if c.contains("**") => {
                    return Err("** stands alone as a ref component: refs/heads/bot/**")
                }
                c => RefComponent::Glob(c.to_owned()),
            });
        }
        if components.first() != Some(&RefComponent::Glob("refs".to_owned())) {
            return Err(
                "the ref is a full ref name under refs/, e.g. refs/heads/bot/** or refs/tags/v*",
            );
        }
        // A wildcard stands for characters a ref name may hold, so the
        // pattern with each in place of one must be a valid name.
        let probe = text.replace("**", "x").replace('*', "x");
        if check_components(&probe).is_err() {
            return Err("the ref breaks git's ref-name rules (no .., //, leading ., .lock, @{, space or ~^:?[\\)");
        }
        Ok(RefPattern {
            text: text.to_owned(),
            components,
        })
    }

    /// Whether the pattern matches a full ref name.
    pub fn matches(&self, refname: &str) -> bool {
        let parts: Vec<&str> = refname.split('/').collect();
        // reach[j]: the components so far match the first j parts. One
        // pass per component: linear in the ref's length, whatever the
        // number of `**`.
        let mut reach = vec![false; parts.len() + 1];
        reach[0] = true;
        for component in &self.components {
            let mut next = vec![false; parts.len() + 1];
            match component {
                RefComponent::Any => {
                    let mut on = false;
                    for (j, slot) in next.iter_mut().enumerate() {
                        on |= reach[j];
                        *slot = on;
                    }
                }
                RefComponent::Glob(glob) => {
                    for (j, part) in parts.iter().enumerate() {
                        if reach[j] && glob_matches(glob.as_bytes(), part.as_bytes()) {
                            next[j + 1] = true;
                        }
                    }
                }
            }
            reach = next;
        }
        reach[parts.len()]
    }
}

impl fmt::Display for RefPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `*` matches any run of bytes (no `/` is ever given here); the rest byte
/// for byte. Backtracks only to the last `*`: O(len(glob) × len(text)).
fn glob_matches(glob: &[u8], text: &[u8]) -> bool {
    let (mut g, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if g < glob.len() && glob[g] == b'*' {
            star = Some((g, t));
            g += 1;
        } else if g < glob.len() && glob[g] == text[t] {
            g += 1;
            t += 1;
        } else if let Some((star_g, star_t)) = star {
            g = star_g + 1;
            t = star_t + 1;
            star = Some((star_g, star_t + 1));
        } else {
            return false;
        }
    }
    glob[g..].iter().all(|&b| b == b'*')
}

/// One `GIT` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRule {
    text: String,
    action: GitAction,
    owner: RepoSegment,
    name: RepoSegment,
    refs: Option<RefPattern>,
}

impl GitRule {
    /// Whether an `allow` entry is meant as a `GIT` rule (and not a REST
    /// one), so the keys file can send it here. Any letter case counts, so
    /// that `git push …` gets [`GitRule::parse`]'s error, which says how to
    /// write it, rather than a REST rule's.
    pub fn is_git_rule(text: &str) -> bool {
        text.split_whitespace()
            .next()
            .is_some_and(|word| word.eq_ignore_ascii_case("GIT"))
    }

    /// Parses `GIT fetch <repo>`, `GIT push <repo> <ref>` or `GIT delete
    /// <repo> <ref>`.
    pub fn parse(text: &str) -> Result<Self, GitRuleError> {
        let error = |why: &str| GitRuleError {
            rule: text.to_owned(),
            why: why.to_owned(),
        };
        let words: Vec<&str> = text.split_whitespace().collect();
        let action = match words.as_slice() {
            ["GIT", "fetch", ..] => GitAction::Fetch,
            ["GIT", "push", ..] => GitAction::Push,
            ["GIT", "delete", ..] => GitAction::Delete,
            ["GIT", _, ..] => return Err(error("the action is fetch, push or delete")),
            _ => {
                return Err(error(
                    "write GIT fetch owner/name, GIT push owner/name refs/… or GIT delete owner/name refs/…",
                ))
            }
        };
        let (repo, refs) = match (action, &words[2..]) {
            (GitAction::Fetch, [repo]) => (*repo, None),
            (GitAction::Fetch, _) => return Err(error("write GIT fetch owner/name")),
            (_, [repo, refs]) => (*repo, Some(*refs)),
            (GitAction::Push, _) => return Err(error("write GIT push owner/name refs/…")),
            (GitAction::Delete, _) => return Err(error("write GIT delete owner/name refs/…")),
        };
        let (owner, name) = repo
            .split_once('/')
            .ok_or_else(|| error("the repository is owner/name, e.g. acme/app or acme/*"))?;
        let segment = |s: &str| -> Result<RepoSegment, GitRuleError> {
            match s {
                "*" => Ok(RepoSegment::Any),
                s if s.contains('*') => {
                    Err(error("* stands alone as a repository segment: acme/*"))
                }
                s if s.ends_with(".git") => Err(error(
                    "write the repository without .git (it is dropped from requests)",
                )),
                s if valid_segment(s) => Ok(RepoSegment::Literal(s.to_owned())),
                _ => Err(error(
                    "the repository is owner/name, each of letters, digits, -, _ and .",
                )),
            }
        };
        let owner = segment(owner)?;
        let name = segment(name)?;
        let refs = refs
            .map(|refs| RefPattern::parse(refs).map_err(error))
            .transpose()?;
        Ok(GitRule {
            text: words.join(" "),
            action,
            owner,
            name,
            refs,
        })
    }

    /// What the rule allows.
    pub fn action(&self) -> GitAction {
        self.action
    }

    /// The ref pattern of a push or delete rule.
    pub fn refs(&self) -> Option<&RefPattern> {
        self.refs.as_ref()
    }

    fn covers(&self, repo: &Repo) -> bool {
        self.owner.matches(&repo.owner) && self.name.matches(&repo.name)
    }
}

impl fmt::Display for GitRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A client's `GIT` rules: every git request of the client is decided
/// here. Empty, it refuses everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitRules {
    rules: Vec<GitRule>,
}

impl GitRules {
    /// The client's rules.
    pub fn new(rules: Vec<GitRule>) -> Self {
        GitRules { rules }
    }

    /// Whether the client may fetch `repo` (`info/refs` for upload-pack and
    /// `git-upload-pack`): any of its rules for `repo` allows it.
    pub fn allows_fetch(&self, repo: &Repo) -> bool {
        self.rules.iter().any(|rule| rule.covers(repo))
    }

    /// Whether the client may start a push to `repo` at all (`info/refs`
    /// for receive-pack): it has a push or delete rule for it.
    pub fn allows_receive_pack(&self, repo: &Repo) -> bool {
        self.rules
            .iter()
            .any(|rule| rule.action != GitAction::Fetch && rule.covers(repo))
    }

    /// The ref patterns the client may push and delete in `repo`, for a
    /// refusal's message.
    pub fn allowed_refs(&self, repo: &Repo) -> AllowedRefs {
        let patterns = |action| {
            self.rules
                .iter()
                .filter(|rule| rule.action == action && rule.covers(repo))
                .filter_map(|rule| rule.refs.as_ref().map(|p| p.text.clone()))
                .collect()
        };
        AllowedRefs {
            push: patterns(GitAction::Push),
            delete: patterns(GitAction::Delete),
        }
    }

    /// Decides a push: allowed when every command is (a create or update by
    /// a push rule, a delete by a delete rule, of `repo`); otherwise every
    /// ref is refused, each with its reason.
    pub fn check_push(&self, repo: &Repo, commands: &[Command]) -> PushDecision {
        let refusals: Vec<Option<RefRefusal>> = commands
            .iter()
            .map(|command| {
                let (action, refusal) = match command.kind() {
                    CommandKind::Create | CommandKind::Update => {
                        (GitAction::Push, RefRefusal::NoPushRule)
                    }
                    CommandKind::Delete => (GitAction::Delete, RefRefusal::NoDeleteRule),
                };
                let allowed = self.rules.iter().any(|rule| {
                    rule.action == action
                        && rule.covers(repo)
                        && rule
                            .refs
                            .as_ref()
                            .is_some_and(|p| p.matches(command.refname().as_str()))
                });
                (!allowed).then_some(refusal)
            })
            .collect();
        if refusals.iter().all(Option::is_none) {
            return PushDecision::Allowed;
        }
        let refs = commands
            .iter()
            .zip(refusals)
            .map(|(command, refusal)| RefVerdict {
                refname: command.refname().as_str().to_owned(),
                kind: command.kind(),
                refusal: refusal.unwrap_or(RefRefusal::OtherRefRefused),
            })
            .collect();
        PushDecision::Refused(RefusedPush {
            repo: repo.to_string(),
            refs,
            allowed: self.allowed_refs(repo),
        })
    }
}

/// The verdict on a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushDecision {
    /// Every ref is allowed: forward the push.
    Allowed,
    /// At least one ref is refused: forward nothing.
    Refused(RefusedPush),
}

/// A refused push: every ref of it with its reason, and what the client
/// may push there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedPush {
    repo: String,
    refs: Vec<RefVerdict>,
    allowed: AllowedRefs,
}

impl RefusedPush {
    /// Every ref of the push, in order.
    pub fn refs(&self) -> &[RefVerdict] {
        &self.refs
    }

    /// The patterns the client may push and delete in this repository.
    pub fn allowed(&self) -> &AllowedRefs {
        &self.allowed
    }

    /// `(ref, reason)` for each ref: what [`crate::push_refusal`] reports.
    pub fn ng_reasons(&self) -> Vec<(&str, &str)> {
        self.refs
            .iter()
            .map(|r| (r.refname.as_str(), r.refusal.reason()))
            .collect()
    }

    /// The lines to show the user (`remote: …`), naming the patterns the
    /// client may push and delete.
    pub fn message(&self) -> String {
        format!(
            "this push to {} is refused by the client's GIT rules; nothing was pushed.\n{}",
            self.repo, self.allowed
        )
    }
}

/// One ref of a refused push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefVerdict {
    refname: String,
    kind: CommandKind,
    refusal: RefRefusal,
}

impl RefVerdict {
    /// The ref.
    pub fn refname(&self) -> &str {
        &self.refname
    }
    /// What the command would have done.
    pub fn kind(&self) -> CommandKind {
        self.kind
    }
    /// Why it is refused.
    pub fn refusal(&self) -> RefRefusal {
        self.refusal
    }
}

/// Why one ref of a refused push is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefRefusal {
    /// A create or update no push rule allows.
    NoPushRule,
    /// A delete no delete rule allows.
    NoDeleteRule,
    /// Allowed, but another ref of the same push is not.
    OtherRefRefused,
}

impl RefRefusal {
    /// A short reason, as git shows it: `! [remote rejected] a -> a (…)`.
    pub fn reason(self) -> &'static str {
        match self {
            RefRefusal::NoPushRule => "no GIT push rule of this client allows this ref",
            RefRefusal::NoDeleteRule => {
                "no GIT delete rule of this client allows deleting this ref"
            }
            RefRefusal::OtherRefRefused => "push refused as a whole: another ref is not allowed",
        }
    }
}

impl fmt::Display for RefRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// The ref patterns a client may push and delete in one repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedRefs {
    /// Patterns of its push rules.
    pub push: Vec<String>,
    /// Patterns of its delete rules.
    pub delete: Vec<String>,
}

impl fmt::Display for AllowedRefs {
    /// Two lines: `may push: …` and `may delete: …` (`nothing` when empty).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |patterns: &[String]| {
            if patterns.is_empty() {
                "nothing".to_owned()
            } else {
                patterns.join(" ")
            }
        };
        write!(
            f,
            "this client may push: {}\nthis client may delete: {}",
            list(&self.push),
            list(&self.delete)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receive_pack::{parse_receive_pack, ReceivePack};

    fn rule(text: &str) -> GitRule {
        match GitRule::parse(text) {
            Ok(rule) => rule,
            Err(e) => panic!("{e}"),
        }
    }

    fn rules(texts: &[&str]) -> GitRules {
        GitRules::new(texts.iter().map(|t| rule(t)).collect())
    }

    fn repo(path: &str) -> Repo {
        match Repo::parse(path) {
            Ok(repo) => repo,
            Err(e) => panic!("{path}: {e}"),
        }
    }

    const ZERO: &str = "0000000000000000000000000000000000000000";
    const OID: &str = "1111111111111111111111111111111111111111";

    /// Commands from `(kind, ref)`: `+` create, `=` update, `-` delete.
    fn commands(list: &[(char, &str)]) -> Vec<Command> {
        let mut body = Vec::new();
        for (i, (kind, name)) in list.iter().enumerate() {
            let (old, new) = match kind {
                '+' => (ZERO, OID),
                '-' => (OID, ZERO),
                _ => (OID, OID),
            };
            let caps = if i == 0 { "\0report-status" } else { "" };
            crate::pkt::write_pkt(&mut body, format!("{old} {new} {name}{caps}").as_bytes());
        }
        body.extend_from_slice(b"0000");
        match parse_receive_pack(&body, Default::default()) {
            Ok(ReceivePack::Push(request)) => request.commands().to_vec(),
            other => panic!("{other:?}"),
        }
    }

    fn pattern(text: &str) -> RefPattern {
        match RefPattern::parse(text) {
            Ok(p) => p,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    #[test]
    fn star_stays_inside_one_component_and_two_stars_take_any_number() {
        let bot = pattern("refs/heads/bot/**");
        assert!(bot.matches("refs/heads/bot/x"));
        assert!(bot.matches("refs/heads/bot/x/y/z"));
        assert!(bot.matches("refs/heads/bot"));
        assert!(!bot.matches("refs/heads/botx"));
        assert!(!bot.matches("refs/heads/main"));
        let tags = pattern("refs/tags/v*");
        assert!(tags.matches("refs/tags/v1.2.3"));
        assert!(tags.matches("refs/tags/v"));
        assert!(!tags.matches("refs/tags/v1/evil"));
        assert!(!tags.matches("refs/tags/x1"));
        let middle = pattern("refs/**/release-*-rc");
        assert!(middle.matches("refs/heads/release-1-rc"));
        assert!(middle.matches("refs/release-2-rc"));
        assert!(middle.matches("refs/a/b/c/release--rc"));
        assert!(!middle.matches("refs/heads/release-1-rc/x"));
        let exact = pattern("refs/heads/main");
        assert!(exact.matches("refs/heads/main"));
        assert!(!exact.matches("refs/heads/Main"));
        assert!(!exact.matches("refs/heads/main/x"));
        assert!(pattern("refs/**").matches("refs/heads/anything/at/all"));
        assert!(pattern("refs/heads/*a*b*").matches("refs/heads/xaybz"));
        assert!(!pattern("refs/heads/*a*b*").matches("refs/heads/xbya"));
    }

    #[test]
    fn many_wildcards_cost_little_on_long_refs() {
        let p = pattern("refs/**/**/**/**/**/**/**/**/x*x*x*x*x*x*y");
        let long = format!("refs/{}/{}", "a/".repeat(2000), "x".repeat(5000));
        assert!(!p.matches(&long));
    }

    #[test]
    fn repositories_match_byte_for_byte_and_lose_one_dot_git() {
        let app = rules(&["GIT fetch acme/app"]);
        assert!(app.allows_fetch(&repo("acme/app")));
        assert!(app.allows_fetch(&repo("acme/app.git")));
        assert!(!app.allows_fetch(&repo("Acme/app")));
        assert!(!app.allows_fetch(&repo("acme/App")));
        assert!(!app.allows_fetch(&repo("acme/app.git.git")));
        assert!(!app.allows_fetch(&repo("acme/apps")));
        let any = rules(&["GIT fetch acme/*"]);
        assert!(any.allows_fetch(&repo("acme/other.git")));
        assert!(!any.allows_fetch(&repo("evil/app")));
        assert!(rules(&["GIT fetch */*"]).allows_fetch(&repo("x/y")));
        for bad in [
            "acme",
            "acme/app/x",
            "acme/",
            "/app",
            "acme/..",
            "acme/a%2fb",
            "acme/a b",
            "acme/.git",
            "a/b/.git",
        ] {
            assert_eq!(Repo::parse(bad), Err(RepoError), "{bad}");
        }
    }

    #[test]
    fn fetch_is_allowed_by_any_rule_of_the_repository_and_push_only_by_push_or_delete() {
        let r = rules(&[
            "GIT fetch acme/read",
            "GIT push acme/write refs/heads/bot/**",
            "GIT delete acme/prune refs/heads/tmp/*",
        ]);
        for name in ["read", "write", "prune"] {
            assert!(r.allows_fetch(&repo(&format!("acme/{name}"))), "{name}");
        }
        assert!(!r.allows_fetch(&repo("acme/other")));
        assert!(!r.allows_receive_pack(&repo("acme/read")));
        assert!(r.allows_receive_pack(&repo("acme/write")));
        assert!(r.allows_receive_pack(&repo("acme/prune")));
        let none = GitRules::default();
        assert!(!none.allows_fetch(&repo("acme/read")));
        assert!(!none.allows_receive_pack(&repo("acme/read")));
    }

    #[test]
    fn a_push_rule_creates_and_updates_but_never_deletes() {
        let r = rules(&["GIT push acme/app refs/heads/bot/**"]);
        let app = repo("acme/app");
        assert_eq!(
            r.check_push(
                &app,
                &commands(&[('+', "refs/heads/bot/a"), ('=', "refs/heads/bot/b")])
            ),
            PushDecision::Allowed
        );
        let PushDecision::Refused(refused) =
            r.check_push(&app, &commands(&[('-', "refs/heads/bot/a")]))
        else {
            panic!("a delete under a push rule")
        };
        assert_eq!(refused.refs()[0].refusal(), RefRefusal::NoDeleteRule);
        assert_eq!(refused.refs()[0].kind(), CommandKind::Delete);
    }

    #[test]
    fn a_delete_rule_deletes_only() {
        let r = rules(&["GIT delete acme/app refs/heads/tmp/*"]);
        let app = repo("acme/app");
        assert_eq!(
            r.check_push(&app, &commands(&[('-', "refs/heads/tmp/x")])),
            PushDecision::Allowed
        );
        for kind in ['+', '='] {
            let PushDecision::Refused(refused) =
                r.check_push(&app, &commands(&[(kind, "refs/heads/tmp/x")]))
            else {
                panic!("{kind} under a delete rule")
            };
            assert_eq!(refused.refs()[0].refusal(), RefRefusal::NoPushRule);
        }
    }

    #[test]
    fn one_refused_ref_refuses_the_whole_push_naming_every_ref() {
        let r = rules(&[
            "GIT push acme/app refs/heads/bot/**",
            "GIT push acme/app refs/tags/v*",
            "GIT delete acme/app refs/heads/bot/**",
            "GIT push acme/other refs/heads/main",
        ]);
        let PushDecision::Refused(refused) = r.check_push(
            &repo("acme/app.git"),
            &commands(&[
                ('+', "refs/heads/bot/a"),
                ('=', "refs/heads/main"),
                ('+', "refs/tags/v2"),
            ]),
        ) else {
            panic!("main is not allowed")
        };
        let verdicts: Vec<_> = refused
            .refs()
            .iter()
            .map(|v| (v.refname(), v.refusal()))
            .collect();
        assert_eq!(
            verdicts,
            [
                ("refs/heads/bot/a", RefRefusal::OtherRefRefused),
                ("refs/heads/main", RefRefusal::NoPushRule),
                ("refs/tags/v2", RefRefusal::OtherRefRefused),
            ]
        );
        assert_eq!(
            refused.allowed(),
            &AllowedRefs {
                push: vec!["refs/heads/bot/**".into(), "refs/tags/v*".into()],
                delete: vec!["refs/heads/bot/**".into()],
            }
        );
        assert_eq!(
            refused.ng_reasons()[1],
            ("refs/heads/main", RefRefusal::NoPushRule.reason())
        );
        assert_eq!(
            refused.message(),
            "this push to acme/app is refused by the client's GIT rules; nothing was pushed.\n\
             this client may push: refs/heads/bot/** refs/tags/v*\n\
             this client may delete: refs/heads/bot/**"
        );
        // Rules of another repository allow nothing here.
        let PushDecision::Refused(elsewhere) =
            r.check_push(&repo("acme/third"), &commands(&[('=', "refs/heads/main")]))
        else {
            panic!("no rule for acme/third")
        };
        assert_eq!(elsewhere.allowed(), &AllowedRefs::default());
        assert!(elsewhere
            .message()
            .ends_with("may push: nothing\nthis client may delete: nothing"));
    }

    #[test]
    fn git_rules_are_told_from_rest_rules() {
        assert!(GitRule::is_git_rule("GIT fetch acme/app"));
        assert!(GitRule::is_git_rule("  GIT  push x"));
        assert!(!GitRule::is_git_rule("GET /repos/**"));
        assert!(!GitRule::is_git_rule("GITHUB fetch a/b"));
        assert!(GitRule::is_git_rule("git fetch a/b"));
        assert!(GitRule::parse("git fetch a/b").is_err());
        assert_eq!(
            rule("GIT  push   acme/app  refs/heads/x").to_string(),
            "GIT push acme/app refs/heads/x"
        );
        assert_eq!(rule("GIT fetch a/b").action(), GitAction::Fetch);
        assert_eq!(
            rule("GIT delete a/b refs/x/y")
                .refs()
                .map(ToString::to_string),
            Some("refs/x/y".into())
        );
    }

    #[test]
    fn invalid_rules_are_errors_that_say_how_to_write_them() {
        for (text, says) in [
            ("GIT", "write GIT fetch owner/name"),
            ("git fetch a/b", "write GIT fetch owner/name"),
            ("GIT clone a/b", "the action is fetch, push or delete"),
            ("GIT fetch", "write GIT fetch owner/name"),
            ("GIT fetch a/b refs/heads/x", "write GIT fetch owner/name"),
            ("GIT push a/b", "write GIT push owner/name refs/"),
            ("GIT delete a/b", "write GIT delete owner/name refs/"),
            ("GIT push a/b refs/x c", "write GIT push owner/name refs/"),
            ("GIT fetch acme", "the repository is owner/name"),
            ("GIT fetch a/b/c", "letters, digits"),
            (
                "GIT fetch acme/app*",
                "* stands alone as a repository segment",
            ),
            (
                "GIT fetch acme/**",
                "* stands alone as a repository segment",
            ),
            ("GIT fetch acme/app.git", "without .git"),
            ("GIT fetch acme/..", "letters, digits"),
            ("GIT fetch acme/a%2Fb", "letters, digits"),
            ("GIT push a/b heads/main", "full ref name under refs/"),
            ("GIT push a/b main", "full ref name under refs/"),
            ("GIT push a/b refs/heads/***", "** stands alone"),
            ("GIT push a/b refs/heads/x**", "** stands alone"),
            ("GIT push a/b refs/heads/a..b", "ref-name rules"),
            ("GIT push a/b refs/heads//x", "ref-name rules"),
            ("GIT push a/b refs/heads/*.lock", "ref-name rules"),
            ("GIT push a/b refs/heads/.x*", "ref-name rules"),
            ("GIT push a/b refs/heads/x?", "ref-name rules"),
            ("GIT push a/b refs/heads/x/", "ref-name rules"),
        ] {
            match GitRule::parse(text) {
                Ok(rule) => panic!("{text:?} parsed as {rule:?}"),
                Err(e) => {
                    let shown = e.to_string();
                    assert!(shown.contains(says), "{text:?}: {shown}");
                    assert!(shown.contains(&format!("{text:?}")), "{shown}");
                }
            }
        }
    }
}
