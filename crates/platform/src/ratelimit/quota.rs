use std::{str::FromStr, time::Duration};

use serde::Deserialize;

/// `limit` requests per `period`, written `600/min`, `10/s`, `100/30s`, `5/h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quota {
    pub limit: u32,
    pub period: Duration,
}

impl Quota {
    pub fn per_minute(limit: u32) -> Self {
        Self {
            limit,
            period: Duration::from_secs(60),
        }
    }

    /// GCRA's emission interval: one request's worth of time.
    pub fn interval(&self) -> Duration {
        self.period / self.limit
    }
}

impl FromStr for Quota {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a quota such as 600/min, 10/s or 100/30s");
        let (limit, per) = s.trim().split_once('/').ok_or_else(bad)?;
        let limit: u32 = limit.trim().parse().map_err(|_| bad())?;
        let per = per.trim();
        let split = per.find(|c: char| !c.is_ascii_digit()).unwrap_or(per.len());
        let (count, unit) = per.split_at(split);
        let count: u64 = if count.is_empty() {
            1
        } else {
            count.parse().map_err(|_| bad())?
        };
        let unit_secs = match unit {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3600,
            "d" | "day" => 86_400,
            _ => return Err(bad()),
        };
        if limit == 0 || count == 0 {
            return Err(bad());
        }
        Ok(Self {
            limit,
            period: Duration::from_secs(count * unit_secs),
        })
    }
}

impl<'de> Deserialize<'de> for Quota {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!("600/min".parse::<Quota>().unwrap(), Quota::per_minute(600));
        assert_eq!(
            "10/s".parse::<Quota>().unwrap().period,
            Duration::from_secs(1)
        );
        assert_eq!(
            "100/30s".parse::<Quota>().unwrap().period,
            Duration::from_secs(30)
        );
        assert_eq!(
            "5/hour".parse::<Quota>().unwrap().period,
            Duration::from_secs(3600)
        );
        for bad in ["", "10", "0/min", "10/fortnight", "x/min", "10/0s"] {
            assert!(bad.parse::<Quota>().is_err(), "{bad}");
        }
    }
}
