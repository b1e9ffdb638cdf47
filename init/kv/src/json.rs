//! etcd v2's response bodies, field for field and in etcd's field order.
//!
//! 1. An [`Event`] becomes `{"action", "node", "prevNode"?}`; a node prints
//!    `key`, then `value` (value nodes), `dir` (only when true), `expiration`
//!    (RFC 3339, UTC) and `ttl` (seconds left, omitted when 0), `nodes` (only
//!    when non-empty), `modifiedIndex` and `createdIndex` (each omitted when 0,
//!    as Go's `omitempty` does for the root). The root prints no `key` at all,
//!    as etcd's does (its internal key is stripped to the empty string).
//! 2. An [`EtcdError`] becomes `{"errorCode", "message", "cause"?, "index"}`.

use serde::{Deserialize, Serialize};

use crate::error::EtcdError;
use crate::store::{Event, NodeView};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseBody {
    pub action: String,
    pub node: NodeBody,
    #[serde(rename = "prevNode", default, skip_serializing_if = "Option::is_none")]
    pub prev_node: Option<NodeBody>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeBody {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub dir: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub ttl: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeBody>,
    #[serde(rename = "modifiedIndex", default, skip_serializing_if = "is_zero_u64")]
    pub modified_index: u64,
    #[serde(rename = "createdIndex", default, skip_serializing_if = "is_zero_u64")]
    pub created_index: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(rename = "errorCode")]
    pub error_code: u16,
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cause: String,
    pub index: u64,
}

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}
fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

impl From<&NodeView> for NodeBody {
    fn from(n: &NodeView) -> Self {
        NodeBody {
            key: if n.key == "/" {
                String::new()
            } else {
                n.key.clone()
            },
            value: n.value.clone(),
            dir: n.dir,
            expiration: n.expiration.map(rfc3339_ms),
            ttl: n.ttl,
            nodes: n.nodes.iter().map(NodeBody::from).collect(),
            modified_index: n.modified_index,
            created_index: n.created_index,
        }
    }
}

impl From<&Event> for ResponseBody {
    fn from(e: &Event) -> Self {
        ResponseBody {
            action: e.action.as_str().to_string(),
            node: NodeBody::from(&e.node),
            prev_node: e.prev_node.as_ref().map(NodeBody::from),
        }
    }
}

impl From<&EtcdError> for ErrorBody {
    fn from(e: &EtcdError) -> Self {
        ErrorBody {
            error_code: e.code.code(),
            message: e.code.message().to_string(),
            cause: e.cause.clone(),
            index: e.index,
        }
    }
}

/// The JSON body etcd sends for an event.
pub fn event_json(e: &Event) -> String {
    serde_json::to_string(&ResponseBody::from(e)).unwrap_or_default()
}

/// The JSON body etcd sends for an error.
pub fn error_json(e: &EtcdError) -> String {
    serde_json::to_string(&ErrorBody::from(e)).unwrap_or_default()
}

/// ms since the epoch as Go's RFC3339Nano in UTC: fraction trimmed of
/// trailing zeros and left out when zero.
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let frac = ms % 1000;
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let sod = secs % 86_400;
    let mut out = format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
    if frac != 0 {
        let f = format!("{frac:03}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar, counting in 400-year eras that start on March 1st so leap days
/// fall at the end of each year.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SetOptions, Store};

    #[test]
    fn rfc3339_formats_like_go() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_ms(1_500), "1970-01-01T00:00:01.5Z");
        assert_eq!(rfc3339_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_ms(1_700_000_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn set_body_matches_etcd_layout() {
        let mut s = Store::new();
        let opts = SetOptions {
            value: "1".into(),
            ..Default::default()
        };
        s.set("/a", &opts, 0).unwrap();
        let opts = SetOptions {
            value: "2".into(),
            ..Default::default()
        };
        let e = s.set("/a", &opts, 0).unwrap();
        assert_eq!(
            event_json(&e),
            r#"{"action":"set","node":{"key":"/a","value":"2","modifiedIndex":2,"createdIndex":2},"prevNode":{"key":"/a","value":"1","modifiedIndex":1,"createdIndex":1}}"#
        );
    }

    #[test]
    fn dir_ttl_and_nodes_layout() {
        let mut s = Store::new();
        let opts = SetOptions {
            dir: true,
            ttl: Some(5),
            ..Default::default()
        };
        s.set("/d", &opts, 1_000).unwrap();
        s.set(
            "/d/x",
            &SetOptions {
                value: "v".into(),
                ..Default::default()
            },
            1_000,
        )
        .unwrap();
        let e = s.get("/d", false, false, 2_500).unwrap();
        assert_eq!(
            event_json(&e),
            r#"{"action":"get","node":{"key":"/d","dir":true,"expiration":"1970-01-01T00:00:06Z","ttl":4,"nodes":[{"key":"/d/x","value":"v","modifiedIndex":2,"createdIndex":2}],"modifiedIndex":1,"createdIndex":1}}"#
        );
    }

    #[test]
    fn root_prints_without_key_or_indexes() {
        let s = Store::new();
        assert_eq!(
            event_json(&s.get("/", false, false, 0).unwrap()),
            r#"{"action":"get","node":{"dir":true}}"#
        );
    }

    #[test]
    fn error_body_layout() {
        let s = Store::new();
        let e = s.get("/a", false, false, 0).unwrap_err();
        assert_eq!(
            error_json(&e),
            r#"{"errorCode":100,"message":"Key not found","cause":"/a","index":0}"#
        );
    }
}
