//! A client's `rate` (`600/min`), parsed from the keys file; the limiter
//! that enforces it is `policy::rate`.

use std::time::Duration;

/// A limit of `count` requests per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    count: u32,
    period: Duration,
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.period.as_secs() {
            1 => "sec",
            60 => "min",
            _ => "hour",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl Rate {
    /// Parses `N/sec`, `N/min` or `N/hour` (N ≥ 1).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("invalid rate {text:?}: write N/sec, N/min or N/hour, N at least 1");
        let (count, unit) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let period = match unit.trim() {
            "sec" | "s" | "second" => Duration::from_secs(1),
            "min" | "m" | "minute" => Duration::from_secs(60),
            "hour" | "h" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        if count == 0 {
            return Err(bad());
        }
        Ok(Rate { count, period })
    }

    /// Microseconds between two requests at the steady rate.
    pub(crate) fn interval_us(self) -> u64 {
        (self.period.as_micros() / u128::from(self.count)).max(1) as u64
    }

    /// How far ahead of now the bucket may run: N − 1 intervals (a burst of N).
    pub(crate) fn tolerance_us(self) -> u64 {
        self.interval_us() * u64::from(self.count - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(text: &str) -> Rate {
        match Rate::parse(text) {
            Ok(rate) => rate,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn rates_parse_like_the_docs_say() {
        assert_eq!(rate("600/min").interval_us(), 100_000);
        assert_eq!(rate("2/sec").interval_us(), 500_000);
        assert_eq!(rate("3600/hour").interval_us(), 1_000_000);
        for bad in ["0/min", "x/min", "5/day", "5", "-1/sec"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }
}
