//! The byte-size grammar of `--max-body-size`, `--cache-size` and the other
//! size flags of the proxy and the agent: plain bytes, or a `KiB`/`MiB`/`GiB`
//! suffix (also `K`/`KB`, … — always binary: `MB` is MiB), any case.

/// Parses a size; `None` if it is not one or does not fit in a `u64`.
///
/// ```
/// assert_eq!(signet_http::size::parse("64KiB"), Some(65_536));
/// assert_eq!(signet_http::size::parse(" 1 mb "), Some(1 << 20));
/// assert_eq!(signet_http::size::parse("1.5MiB"), None);
/// ```
pub fn parse(text: &str) -> Option<u64> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(multiplier)
}

/// What to tell a user whose size did not parse.
pub const HINT: &str = "use bytes or a KiB, MiB or GiB suffix";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_bytes_or_binary_multiples() {
        for (text, expected) in [
            ("0", Some(0)),
            ("1048576", Some(1_048_576)),
            ("32MiB", Some(32 << 20)),
            ("2g", Some(2 << 30)),
            ("7B", Some(7)),
            ("", None),
            ("MiB", None),
            ("-1", None),
            ("1TiB", None),
            ("99999999999999999999", None),
            ("18446744073709551615GiB", None),
        ] {
            assert_eq!(parse(text), expected, "{text:?}");
        }
    }
}
