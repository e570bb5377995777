//! Wire-level helpers shared by every API: request parsing, timestamps, etags, base64 and pagination.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

/// One parsed HTTP request: decoded path segments, the custom verb of the last segment, the query and the body.
#[derive(Debug)]
pub struct Request {
    pub method: axum::http::Method,
    pub segments: Vec<String>,
    pub verb: Option<String>,
    pub query: HashMap<String, String>,
    pub body: bytes::Bytes,
    /// The host the client addressed (absolute-form URI or `Host` header); regional v1 hosts carry the region.
    pub host: Option<String>,
    /// Who sent it, from the `Authorization` header.
    pub caller: Caller,
}

/// Who sent a request (`crate::auth` resolves it from the `Authorization` header).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Caller {
    /// No bearer token.
    #[default]
    Anonymous,
    /// A bearer token the emulator did not mint, or one that expired.
    Unknown,
    /// The principal of a token the emulator minted.
    Principal(String),
}

impl Caller {
    /// The caller's IAM member, when known.
    pub fn principal(&self) -> Option<&str> {
        match self {
            Caller::Principal(p) => Some(p),
            _ => None,
        }
    }
}

impl Request {
    pub fn parse(method: axum::http::Method, path: &str, query: Option<&str>, body: bytes::Bytes) -> Self {
        let mut segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect();
        // Custom methods are spelled `name:verb` in the last segment. Service-account emails and resource ids
        // never contain ':', so the last colon of the last segment is unambiguous.
        let mut verb = None;
        if let Some(last) = segments.last_mut()
            && let Some(at) = last.rfind(':')
        {
            verb = Some(last[at + 1..].to_string());
            last.truncate(at);
        }
        Request {
            method,
            segments,
            verb,
            query: parse_query(query.unwrap_or("")),
            body,
            host: None,
            caller: Caller::Anonymous,
        }
    }

    /// A query parameter by its camelCase name, also accepting the snake_case spelling.
    pub fn param(&self, camel: &str) -> Option<&str> {
        if let Some(v) = self.query.get(camel) {
            return Some(v.as_str());
        }
        self.query.get(&snake_case(camel)).map(String::as_str)
    }

    pub fn bool_param(&self, camel: &str) -> ApiResult<bool> {
        match self.param(camel) {
            None | Some("") | Some("false") | Some("False") | Some("0") => Ok(false),
            Some("true") | Some("True") | Some("1") => Ok(true),
            Some(other) => Err(ApiError::invalid(format!(
                "Invalid value at '{camel}' (TYPE_BOOL), \"{other}\""
            ))),
        }
    }

    pub fn int_param(&self, camel: &str) -> ApiResult<Option<i64>> {
        match self.param(camel) {
            None | Some("") => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|_| {
                ApiError::invalid(format!("Invalid value at '{camel}' (TYPE_INT32), \"{text}\""))
            }),
        }
    }

    /// The body as a JSON object (an empty body is an empty object).
    pub fn json(&self) -> ApiResult<Map<String, Value>> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Map::new());
        }
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(ApiError::invalid(
                "Invalid JSON payload received. Expected an object at the top level.",
            )),
            Err(e) => Err(ApiError::invalid(format!(
                "Invalid JSON payload received. {}",
                describe_json_error(&e)
            ))),
        }
    }
}

fn describe_json_error(e: &serde_json::Error) -> String {
    format!("Unexpected token at line {} column {}.", e.line(), e.column())
}

fn snake_case(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_query(query: &str) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(&k.replace('+', " "));
        let v = percent_decode(&v.replace('+', " "));
        map.insert(k, v);
    }
    map
}

pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes base64 in either alphabet, with or without padding (clients re-encode etags freely).
pub fn b64_decode(text: &str) -> Option<Vec<u8>> {
    let trimmed = text.trim();
    STANDARD
        .decode(trimmed)
        .or_else(|_| URL_SAFE.decode(trimmed))
        .or_else(|_| URL_SAFE_NO_PAD.decode(trimmed.trim_end_matches('=')))
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed.trim_end_matches('=')))
        .ok()
}

/// A fresh etag: the base64 of eight bytes, unique within the emulator.
pub fn etag_bytes(counter: &mut u64) -> Vec<u8> {
    *counter += 1;
    let mut bytes = vec![0x07];
    bytes.extend_from_slice(&counter.to_be_bytes()[1..]);
    bytes
}

/// A list method's response: the page under `field` (left out when empty, as Google does) and `nextPageToken`
/// when there is another page.
/// `items`, already in their answer order, as one page under `field`; page tokens are positions.
pub fn page_in_order(field: &str, items: Vec<Value>, req: &Request, max: i64) -> ApiResult<Value> {
    let (page, next) = paginate(
        items.into_iter().enumerate().collect(),
        req.int_param("pageSize")?,
        req.param("pageToken"),
        max,
        usize::to_string,
        |t| t.parse().ok(),
        true,
    )?;
    Ok(Value::Object(list_response(field, page, next)))
}

/// One page of `items` keyed by resource name, answered as `{field: [...], nextPageToken}`: the items are ordered by
/// name, and the token is the last name returned.
pub fn page_by_name(
    field: &str,
    mut items: Vec<(String, Value)>,
    req: &Request,
    max: i64,
) -> ApiResult<Value> {
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let (page, next) = paginate(
        items,
        req.int_param("pageSize")?,
        req.param("pageToken"),
        max,
        String::clone,
        |t| Some(t.to_string()),
        true,
    )?;
    Ok(Value::Object(list_response(field, page, next)))
}

pub fn list_response(field: &str, page: Vec<Value>, next: Option<String>) -> Map<String, Value> {
    let mut out = Map::new();
    if !page.is_empty() {
        out.insert(field.into(), Value::Array(page));
    }
    if let Some(n) = next {
        out.insert("nextPageToken".into(), Value::String(n));
    }
    out
}

/// A page of `items` after the token; the token is the base64 of the last key returned.
pub fn paginate<K: Clone + Ord, T>(
    items: Vec<(K, T)>,
    page_size: Option<i64>,
    page_token: Option<&str>,
    max: i64,
    key_to_token: impl Fn(&K) -> String,
    token_to_key: impl Fn(&str) -> Option<K>,
    ascending: bool,
) -> ApiResult<(Vec<T>, Option<String>)> {
    let size = match page_size {
        None | Some(0) => max,
        Some(n) if n < 0 => return Err(ApiError::invalid("page_size must not be negative")),
        Some(n) => n.min(max),
    };
    let start_after = match page_token.filter(|t| !t.is_empty()) {
        None => None,
        Some(token) => {
            let raw = b64_decode(token)
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::invalid("Invalid page token"))?;
            Some(token_to_key(&raw).ok_or_else(|| ApiError::invalid("Invalid page token"))?)
        }
    };
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    let mut last_key = None;
    let mut more = false;
    for (k, item) in items {
        if let Some(after) = &start_after
            && ((ascending && &k <= after) || (!ascending && &k >= after))
        {
            continue;
        }
        if out.len() == size {
            more = true;
            break;
        }
        last_key = Some(k);
        out.push(item);
    }
    let next = if more {
        last_key.map(|k| b64(key_to_token(&k).as_bytes()))
    } else {
        None
    };
    Ok((out, next))
}

/// Reads a string field from a JSON object.
pub fn str_field<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    map.get(name).and_then(Value::as_str)
}

/// Reads a string-to-string map field (`labels`, `annotations`), refusing other shapes.
pub fn string_map(
    map: &Map<String, Value>,
    name: &str,
) -> ApiResult<std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    match map.get(name) {
        None | Some(Value::Null) => {}
        Some(Value::Object(entries)) => {
            for (k, v) in entries {
                let v = v.as_str().ok_or_else(|| {
                    ApiError::invalid(format!(
                        "Invalid value at '{name}[{k}]' (TYPE_STRING), expected a string"
                    ))
                })?;
                out.insert(k.clone(), v.to_string());
            }
        }
        Some(_) => {
            return Err(ApiError::invalid(format!(
                "Invalid value at '{name}', expected a map of strings"
            )));
        }
    }
    Ok(out)
}

pub fn map_to_value(map: &std::collections::BTreeMap<String, String>) -> Value {
    Value::Object(
        map.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// An int64 that JSON clients send either as a string (proto3 JSON) or as a number.
pub fn int64_value(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Parses a protobuf JSON duration (`"300s"`, `"1.5s"`).
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let secs: f64 = text.strip_suffix('s')?.parse().ok()?;
    if secs.is_finite() && secs >= 0.0 {
        Some(std::time::Duration::from_secs_f64(secs))
    } else {
        None
    }
}

/// Replaces integer enum values (sent with `enum-encoding=int`) by their names, for the listed fields.
pub fn normalize_enum(value: &mut Value, names: &[&str]) {
    if let Value::Number(n) = value
        && let Some(i) = n.as_u64()
        && let Some(name) = names.get(usize::try_from(i).unwrap_or(usize::MAX))
        && !name.is_empty()
    {
        *value = Value::String((*name).to_string());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[test]
    fn custom_verbs_and_percent_encoding_are_split_from_the_path() {
        let r = Request::parse(
            axum::http::Method::GET,
            "/v1/projects/p/secrets/x/versions/latest%3Aaccess",
            Some("%24alt=json%3Benum-encoding%3Dint&pageSize=5"),
            bytes::Bytes::new(),
        );
        assert_eq!(
            r.segments,
            ["v1", "projects", "p", "secrets", "x", "versions", "latest"]
        );
        assert_eq!(r.verb.as_deref(), Some("access"));
        assert_eq!(
            r.query.get("$alt").map(String::as_str),
            Some("json;enum-encoding=int")
        );
        assert_eq!(r.int_param("pageSize").unwrap(), Some(5));
        let email = Request::parse(
            axum::http::Method::GET,
            "/v1/projects/-/serviceAccounts/a%40b.com",
            None,
            bytes::Bytes::new(),
        );
        assert_eq!(email.segments[4], "a@b.com");
        assert_eq!(email.verb, None);
    }

    #[test]
    fn snake_case_query_parameters_are_accepted() {
        let r = Request::parse(
            axum::http::Method::GET,
            "/x",
            Some("page_token=abc&update_mask=labels"),
            bytes::Bytes::new(),
        );
        assert_eq!(r.param("pageToken"), Some("abc"));
        assert_eq!(r.param("updateMask"), Some("labels"));
        assert!(r.bool_param("validateOnly").is_ok());
        let bad = Request::parse(
            axum::http::Method::GET,
            "/x",
            Some("validateOnly=maybe"),
            bytes::Bytes::new(),
        );
        assert!(bad.bool_param("validateOnly").is_err());
    }

    #[test]
    fn base64_accepts_both_alphabets_with_and_without_padding() {
        let bytes = vec![0xfb, 0xff, 0x07];
        for text in ["+/8H", "-_8H"] {
            assert_eq!(b64_decode(text).unwrap(), bytes, "{text}");
        }
        assert_eq!(
            b64_decode("BwAAAAAAAAE").unwrap(),
            b64_decode("BwAAAAAAAAE=").unwrap()
        );
        assert!(b64_decode("%%").is_none());
    }

    #[test]
    fn pagination_resumes_after_the_token() {
        let items: Vec<(u32, u32)> = (1..=5).map(|i| (i, i * 10)).collect();
        let (page, next) = paginate(
            items.clone(),
            Some(2),
            None,
            100,
            u32::to_string,
            |t| t.parse().ok(),
            true,
        )
        .unwrap();
        assert_eq!(page, [10, 20]);
        let (page, next) = paginate(
            items.clone(),
            Some(2),
            next.as_deref(),
            100,
            u32::to_string,
            |t| t.parse().ok(),
            true,
        )
        .unwrap();
        assert_eq!(page, [30, 40]);
        let (page, next) = paginate(
            items,
            Some(2),
            next.as_deref(),
            100,
            u32::to_string,
            |t| t.parse().ok(),
            true,
        )
        .unwrap();
        assert_eq!((page, next), (vec![50], None));
    }

    #[test]
    fn durations_and_enums() {
        assert_eq!(parse_duration("300s"), Some(std::time::Duration::from_secs(300)));
        assert_eq!(
            parse_duration("1.5s"),
            Some(std::time::Duration::from_millis(1500))
        );
        assert_eq!(parse_duration("5m"), None);
        let mut v = serde_json::json!(2);
        normalize_enum(&mut v, &["A", "B", "C"]);
        assert_eq!(v, "C");
        let mut out_of_range = serde_json::json!(9);
        normalize_enum(&mut out_of_range, &["A"]);
        assert_eq!(out_of_range, 9);
    }
}
