//! Optimistic concurrency over HTTP: a resource's version is its strong
//! entity tag, and a write may carry `If-Match` (RFC 9110, strong
//! comparison). Modules map a failed precondition to their own 412 error.

use axum::{
    http::{HeaderMap, HeaderValue, header},
    response::Response,
};

/// The strong entity tag of a version: `"7"`.
pub fn etag(version: i32) -> String {
    format!("\"{version}\"")
}

/// Adds `ETag: "<version>"` to `response`.
pub fn with_etag(mut response: Response, version: i32) -> Response {
    if let Ok(value) = HeaderValue::from_str(&etag(version)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// Whether `If-Match` allows writing over `version`: absent, `*`, or one
/// of the listed tags is `"<version>"`.
pub fn if_match_allows(headers: &HeaderMap, version: i32) -> bool {
    let values: Vec<&str> = headers
        .get_all(header::IF_MATCH)
        .iter()
        .map(|v| v.to_str().unwrap_or(""))
        .collect();
    if values.is_empty() {
        return true;
    }
    let current = etag(version);
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag == current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_compares_strong_tags() {
        let mut headers = HeaderMap::new();
        assert!(if_match_allows(&headers, 3), "absent");
        headers.insert(header::IF_MATCH, HeaderValue::from_static("\"2\", \"3\""));
        assert!(if_match_allows(&headers, 3));
        assert!(!if_match_allows(&headers, 4));
        headers.insert(header::IF_MATCH, HeaderValue::from_static("*"));
        assert!(if_match_allows(&headers, 9));
        headers.insert(header::IF_MATCH, HeaderValue::from_static("W/\"3\""));
        assert!(
            !if_match_allows(&headers, 3),
            "weak tags never match strongly"
        );
    }
}
