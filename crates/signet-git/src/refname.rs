//! Git's ref-name rules (`git check-ref-format`), as `git receive-pack`
//! applies them to a pushed ref: a full name under `refs/` with at least two
//! components after it (`refs/heads/main`, never `refs/stash`), since the
//! upstream refuses anything else and a name it would read differently must
//! never reach a policy decision.

use std::fmt;

/// A ref name that passed [`check_ref_name`]: what a push command names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RefName(String);

impl RefName {
    /// Checks `name` by git's rules (see [`check_ref_name`]).
    pub fn parse(name: &str) -> Result<Self, RefNameError> {
        check_ref_name(name)?;
        Ok(RefName(name.to_owned()))
    }

    /// The name, e.g. `refs/heads/main`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RefName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a ref name is refused; each reason is one of git's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefNameError {
    /// Not under `refs/`, or fewer than two components after it.
    #[error("a pushed ref is a full name under refs/ with two components or more")]
    NotUnderRefs,
    /// An empty component: `//`, or a `/` at the end.
    #[error("empty component (// or a trailing /)")]
    EmptyComponent,
    /// A component starting with `.` (which includes `.` and `..`).
    #[error("a component starts with .")]
    LeadingDot,
    /// A component ending with `.lock`.
    #[error("a component ends with .lock")]
    LockSuffix,
    /// `..` anywhere.
    #[error("contains ..")]
    DoubleDot,
    /// `@{` anywhere, or the whole name is `@`.
    #[error("contains @{{ or is @")]
    AtBrace,
    /// A control character, space, `~`, `^`, `:`, `?`, `*`, `[` or `\`.
    #[error("contains a control character, space or one of ~^:?*[\\")]
    ForbiddenCharacter,
    /// Ends with `.`.
    #[error("ends with .")]
    TrailingDot,
}

/// Checks a full ref name as `git check-ref-format` does (without
/// `--allow-onelevel`, `--refspec-pattern` or `--normalize`), plus the
/// `refs/` prefix `git receive-pack` requires of a pushed ref.
pub fn check_ref_name(name: &str) -> Result<(), RefNameError> {
    check_components(name)?;
    let mut components = name.split('/');
    if components.next() != Some("refs") || components.count() < 2 {
        return Err(RefNameError::NotUnderRefs);
    }
    Ok(())
}

/// The rules that hold for every component and for the name as a whole,
/// shared with ref patterns (whose wildcards are checked before).
pub(crate) fn check_components(name: &str) -> Result<(), RefNameError> {
    if name == "@" || name.contains("@{") {
        return Err(RefNameError::AtBrace);
    }
    if name.contains("..") {
        return Err(RefNameError::DoubleDot);
    }
    if name
        .bytes()
        .any(|b| b < 0x20 || b == 0x7f || b" ~^:?*[\\".contains(&b))
    {
        return Err(RefNameError::ForbiddenCharacter);
    }
    if name.ends_with('.') {
        return Err(RefNameError::TrailingDot);
    }
    for component in name.split('/') {
        if component.is_empty() {
            return Err(RefNameError::EmptyComponent);
        }
        if component.starts_with('.') {
            return Err(RefNameError::LeadingDot);
        }
        if component.ends_with(".lock") {
            return Err(RefNameError::LockSuffix);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_branch_and_tag_names_pass() {
        for name in [
            "refs/heads/main",
            "refs/heads/bot/deps-2026.12",
            "refs/tags/v1.2.3",
            "refs/heads/feature/é",
            "refs/pull/1/head",
            "refs/heads/a@b",
            "refs/heads/x.locked",
        ] {
            assert_eq!(check_ref_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn each_of_gits_rules_refuses_its_case() {
        use RefNameError::*;
        for (name, why) in [
            ("heads/main", NotUnderRefs),
            ("refs/stash", NotUnderRefs),
            ("refs", NotUnderRefs),
            ("HEAD", NotUnderRefs),
            ("refs/heads/a..b", DoubleDot),
            ("refs/heads/a/../b", DoubleDot),
            ("refs/heads/.hidden", LeadingDot),
            ("refs/heads/./x", LeadingDot),
            ("refs/heads/main.lock", LockSuffix),
            ("refs/heads/x.lock/y", LockSuffix),
            ("refs/heads/a@{1}", AtBrace),
            ("@", AtBrace),
            ("refs/heads/main/", EmptyComponent),
            ("refs//heads/main", EmptyComponent),
            ("/refs/heads/main", EmptyComponent),
            ("refs/heads/main.", TrailingDot),
            ("refs/heads/a b", ForbiddenCharacter),
            ("refs/heads/a~1", ForbiddenCharacter),
            ("refs/heads/a^", ForbiddenCharacter),
            ("refs/heads/a:b", ForbiddenCharacter),
            ("refs/heads/a?", ForbiddenCharacter),
            ("refs/heads/a*", ForbiddenCharacter),
            ("refs/heads/a[", ForbiddenCharacter),
            ("refs/heads/a\\b", ForbiddenCharacter),
            ("refs/heads/a\tb", ForbiddenCharacter),
            ("refs/heads/a\u{7f}", ForbiddenCharacter),
            ("refs/heads/a\nb", ForbiddenCharacter),
            ("refs/heads/a\0b", ForbiddenCharacter),
        ] {
            assert_eq!(check_ref_name(name), Err(why), "{name:?}");
        }
    }
}
