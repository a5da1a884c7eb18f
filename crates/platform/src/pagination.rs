//! Cursor pagination, the only kind the API offers (never OFFSET).
//!
//! A list is ordered by a sort key plus the row id as a tie-breaker, and the
//! cursor is that pair for the last row served, encoded as opaque base64url
//! JSON. Queries fetch `limit + 1` rows; the extra row only says whether
//! there is more. See docs/API-DESIGN.md.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::{ApiError, codes};

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 50;

/// `?limit=&cursor=` of every list endpoint.
#[derive(Clone, Debug, Default, Deserialize, IntoParams, validator::Validate)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1 to 50 (default 20).
    #[validate(range(min = 1, max = 50))]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A position in a list: the sort key and id of the last row served.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cursor<K> {
    #[serde(rename = "k")]
    pub key: K,
    pub id: Uuid,
}

impl<K: Serialize + DeserializeOwned> Cursor<K> {
    pub fn new(key: K, id: Uuid) -> Self {
        Self { key, id }
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(raw: &str) -> Result<Self, ApiError> {
        let invalid = || {
            ApiError::bad_request(
                codes::INVALID_CURSOR,
                "`cursor` is not a cursor this list returned",
            )
        };
        if raw.len() > 512 {
            return Err(invalid());
        }
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
        serde_json::from_slice(&bytes).map_err(|_| invalid())
    }
}

impl PageParams {
    /// Rows to serve (the query asks for one more).
    pub fn limit(&self) -> u32 {
        self.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
    }

    /// `limit + 1`, ready for a SQL `LIMIT`.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit()) + 1
    }

    /// The decoded cursor, if any; a malformed one is a 400 `invalid_cursor`.
    pub fn after<K: Serialize + DeserializeOwned>(&self) -> Result<Option<Cursor<K>>, ApiError> {
        self.cursor
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(Cursor::decode)
            .transpose()
    }
}

/// `{"object":"list","data":[...],"has_more":..,"next_cursor":..}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    /// Always `list`.
    #[schema(example = "list")]
    pub object: &'static str,
    pub data: Vec<T>,
    pub has_more: bool,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows fetched in list order.
    pub fn from_rows<K, F>(mut rows: Vec<T>, params: &PageParams, cursor_of: F) -> Self
    where
        K: Serialize + DeserializeOwned,
        F: Fn(&T) -> Cursor<K>,
    {
        let limit = params.limit() as usize;
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if has_more {
            rows.last().map(|row| cursor_of(row).encode())
        } else {
            None
        };
        Self {
            object: "list",
            data: rows,
            has_more,
            next_cursor,
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            object: self.object,
            data: self.data.into_iter().map(f).collect(),
            has_more: self.has_more,
            next_cursor: self.next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    #[test]
    fn cursors_round_trip_and_garbage_is_rejected() {
        let cursor = Cursor::new(
            DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap(),
            Uuid::now_v7(),
        );
        let decoded = Cursor::<DateTime<Utc>>::decode(&cursor.encode()).unwrap();
        assert_eq!(decoded, cursor);
        for bad in ["", "%%%", "bm90IGpzb24", &"A".repeat(600)] {
            let err = Cursor::<DateTime<Utc>>::decode(bad).unwrap_err();
            assert_eq!(err.code(), "invalid_cursor");
        }
        // A cursor of another list (another key type) is rejected too.
        let other = Cursor::new("text".to_string(), Uuid::now_v7()).encode();
        assert!(Cursor::<i64>::decode(&other).is_err());
    }

    #[test]
    fn pages_report_more_only_when_an_extra_row_came_back() {
        let params = PageParams {
            limit: Some(2),
            cursor: None,
        };
        let ids: Vec<(i64, Uuid)> = (0..3).map(|n| (n, Uuid::now_v7())).collect();
        let page = Page::from_rows(ids.clone(), &params, |(k, id)| Cursor::new(*k, *id));
        assert!(page.has_more);
        assert_eq!(page.data.len(), 2);
        let next = Cursor::<i64>::decode(page.next_cursor.as_deref().unwrap()).unwrap();
        assert_eq!(next, Cursor::new(1, ids[1].1));
        let last = Page::from_rows(ids[..2].to_vec(), &params, |(k, id)| Cursor::new(*k, *id));
        assert!(!last.has_more);
        assert!(last.next_cursor.is_none());
    }

    #[test]
    fn limit_defaults_and_is_bounded() {
        assert_eq!(PageParams::default().limit(), 20);
        assert_eq!(
            PageParams {
                limit: Some(50),
                cursor: None
            }
            .fetch_limit(),
            51
        );
    }
}
