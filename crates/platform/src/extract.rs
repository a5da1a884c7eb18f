//! Extractors that turn bad input into the envelope instead of axum's plain
//! text rejections: malformed JSON → 400 `invalid_json`, a body that does not
//! fit the type or fails its rules → 400 `validation_failed` with one detail
//! per field, a bad query string → 400 `validation_failed`, a path segment
//! that is not a valid id → 404 `not_found` (no such resource can exist).

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request, rejection::BytesRejection},
    http::{StatusCode, header, request::Parts},
};
use serde::de::DeserializeOwned;
use validator::{Validate, ValidationErrors, ValidationErrorsKind};

use crate::error::{ApiError, FieldError, codes};

/// A JSON body, deserialized and then checked with its `validator` rules.
#[derive(Debug, Clone, Copy, Default)]
pub struct ValidJson<T>(pub T);

impl<S, T> FromRequest<S> for ValidJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        value.validate().map_err(validation_error)?;
        Ok(Self(value))
    }
}

/// A JSON body with the envelope's rejections but no extra rules.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !has_json_content_type(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                codes::UNSUPPORTED_MEDIA_TYPE,
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(bytes_rejection)?;
        parse_json(&bytes).map(Json)
    }
}

/// Parses a JSON document into `T`, separating syntax errors (the client sent
/// something that is not JSON) from shape errors (valid JSON, wrong fields).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax
            | serde_json::error::Category::Eof
            | serde_json::error::Category::Io => ApiError::bad_request(
                codes::INVALID_JSON,
                format!("the body is not valid JSON: {inner}"),
            ),
            serde_json::error::Category::Data => shape_error(&path, &inner.to_string()),
        }
    })
}

/// A query string, deserialized and validated like a body.
#[derive(Debug, Clone, Copy, Default)]
pub struct ValidQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ValidQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        let value: T = serde_path_to_error::deserialize(deserializer).map_err(|error| {
            let path = error.path().to_string();
            shape_error(&path, &error.into_inner().to_string())
        })?;
        value.validate().map_err(validation_error)?;
        Ok(Self(value))
    }
}

/// Path parameters; one that does not parse (an id that is not a UUID) names
/// a resource that cannot exist, so it is a 404 like any unknown id.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|_| ApiError::not_found())
    }
}

fn has_json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

fn bytes_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        crate::error::envelope_for_status(StatusCode::PAYLOAD_TOO_LARGE)
    } else {
        ApiError::bad_request("bad_request", "the request body could not be read")
    }
}

/// Maps serde's "missing field `x`" / "invalid type …" to a field error.
fn shape_error(path: &str, message: &str) -> ApiError {
    let (field, code) = if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|m| m.split('`').next())
    {
        (join_path(path, name), "required")
    } else if message.starts_with("unknown field") {
        // serde_path_to_error's path already ends at the unknown field.
        (path.to_string(), "unknown_field")
    } else if message.starts_with("unknown variant") {
        (path.to_string(), "invalid_choice")
    } else {
        (path.to_string(), "invalid_type")
    };
    let field = if field.is_empty() || field == "." {
        "body".to_string()
    } else {
        field
    };
    // serde messages may end with " at line 1 column 5"; people do not need it.
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(message)
        .to_string();
    ApiError::validation(vec![FieldError {
        field,
        code: code.into(),
        message,
    }])
}

fn join_path(parent: &str, name: &str) -> String {
    if parent.is_empty() || parent == "." {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

/// Flattens `validator`'s nested errors into one detail per field, with
/// dotted paths (`pricing.daily`, `packages[1].price`).
pub fn validation_error(errors: ValidationErrors) -> ApiError {
    let mut fields = Vec::new();
    collect(&errors, String::new(), &mut fields);
    fields.sort_by(|a, b| a.field.cmp(&b.field));
    ApiError::validation(fields)
}

fn collect(errors: &ValidationErrors, prefix: String, out: &mut Vec<FieldError>) {
    for (field, kind) in errors.errors() {
        let path = if prefix.is_empty() {
            field.to_string()
        } else {
            format!("{prefix}.{field}")
        };
        match kind {
            ValidationErrorsKind::Field(list) => {
                for error in list {
                    let message = error
                        .message
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_else(|| default_message(error));
                    out.push(FieldError {
                        field: path.clone(),
                        code: error.code.to_string(),
                        message,
                    });
                }
            }
            ValidationErrorsKind::Struct(inner) => collect(inner, path, out),
            ValidationErrorsKind::List(items) => {
                for (index, inner) in items {
                    collect(inner, format!("{path}[{index}]"), out);
                }
            }
        }
    }
}

fn default_message(error: &validator::ValidationError) -> String {
    let param = |name: &str| error.params.get(name).map(|v| v.to_string());
    match error.code.as_ref() {
        "length" => match (param("min"), param("max")) {
            (Some(min), Some(max)) => format!("length must be between {min} and {max}"),
            (Some(min), None) => format!("length must be at least {min}"),
            (None, Some(max)) => format!("length must be at most {max}"),
            _ => "invalid length".into(),
        },
        "range" => match (param("min"), param("max")) {
            (Some(min), Some(max)) => format!("must be between {min} and {max}"),
            (Some(min), None) => format!("must be at least {min}"),
            (None, Some(max)) => format!("must be at most {max}"),
            _ => "out of range".into(),
        },
        "email" => "must be an email address".into(),
        "url" => "must be a URL".into(),
        "required" => "is required".into(),
        other => format!("failed the `{other}` rule"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, Validate)]
    #[serde(deny_unknown_fields)]
    struct Signup {
        #[validate(email)]
        email: String,
        #[validate(length(min = 10))]
        password: String,
        #[validate(nested)]
        address: Option<Address>,
    }

    #[derive(Debug, Deserialize, Validate)]
    struct Address {
        #[validate(length(min = 1, max = 5))]
        city: String,
    }

    #[test]
    fn syntax_errors_are_invalid_json() {
        let err = parse_json::<Signup>(b"{\"email\": ").unwrap_err();
        assert_eq!(err.code(), "invalid_json");
    }

    #[test]
    fn shape_errors_name_the_field() {
        let err = parse_json::<Signup>(br#"{"email": "a@b.co"}"#).unwrap_err();
        assert_eq!(err.code(), "validation_failed");
        assert!(err.message().contains("password"), "{}", err.message());
        let err = parse_json::<Signup>(br#"{"email": 5, "password": "x"}"#).unwrap_err();
        assert!(err.message().contains("`email`"), "{}", err.message());
    }

    #[test]
    fn rule_errors_are_flattened_with_paths() {
        let value = parse_json::<Signup>(
            br#"{"email":"nope","password":"short","address":{"city":"toolongcity"}}"#,
        )
        .unwrap();
        let err = validation_error(value.validate().unwrap_err());
        assert_eq!(err.code(), "validation_failed");
        let rendered = format!("{err:?}");
        for field in ["address.city", "email", "password"] {
            assert!(rendered.contains(field), "{rendered}");
        }
    }
}
