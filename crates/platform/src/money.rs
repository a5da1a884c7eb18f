//! Money as integer minor units plus an ISO 4217 currency: never floats.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An amount of money, e.g. `{"amount": 1999, "currency": "EUR"}` is €19.99.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct Money {
    /// Amount in the currency's minor unit (cents for EUR/USD).
    pub amount: i64,
    pub currency: Currency,
}

/// An ISO 4217 alphabetic currency code (three upper-case letters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ToSchema)]
#[schema(value_type = String, example = "EUR")]
pub struct Currency([u8; 3]);

impl Currency {
    /// Parses a code; only the shape is checked here, the list of currencies
    /// a listing may use is a business rule of the modules.
    pub fn parse(code: &str) -> Option<Self> {
        let bytes = code.as_bytes();
        (bytes.len() == 3 && bytes.iter().all(u8::is_ascii_uppercase))
            .then(|| Self([bytes[0], bytes[1], bytes[2]]))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Currency::parse(&code).ok_or_else(|| {
            serde::de::Error::custom(format!("`{code}` is not an ISO 4217 currency code"))
        })
    }
}

impl Money {
    pub fn new(amount: i64, currency: Currency) -> Self {
        Self { amount, currency }
    }

    /// Adds two amounts of the same currency; `None` on a currency mismatch
    /// or overflow, which callers must treat as a bug or a bad input.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        (self.currency == other.currency).then_some(())?;
        Some(Money::new(
            self.amount.checked_add(other.amount)?,
            self.currency,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_codes_are_validated() {
        assert!(Currency::parse("EUR").is_some());
        assert!(Currency::parse("eur").is_none());
        assert!(Currency::parse("EURO").is_none());
        assert!(serde_json::from_str::<Currency>("\"US\"").is_err());
        assert_eq!(
            serde_json::to_string(&Currency::parse("USD").unwrap()).unwrap(),
            "\"USD\""
        );
    }

    #[test]
    fn adding_different_currencies_is_refused() {
        let eur = Currency::parse("EUR").unwrap();
        let usd = Currency::parse("USD").unwrap();
        assert_eq!(
            Money::new(1, eur).checked_add(Money::new(2, eur)),
            Some(Money::new(3, eur))
        );
        assert_eq!(Money::new(1, eur).checked_add(Money::new(2, usd)), None);
        assert_eq!(
            Money::new(i64::MAX, eur).checked_add(Money::new(1, eur)),
            None
        );
    }
}
