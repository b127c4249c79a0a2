//! The journal JSON format (`journalctl -o json`): one object per line.
//!
//! Owns: reading the fields the carrier needs out of one line, whatever form each value
//! takes (string, array of byte values for non-UTF-8 data, array of values for a repeated
//! field, `null` for a value over 4096 bytes).
//! Must not: build a map of every field: the others are skipped unread, which is what
//! keeps this fast.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::CarriedFields;

/// A field value in any of its JSON forms, reduced to its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Value<'a> {
    /// `null` (too large, or an empty repeated field).
    #[default]
    Null,
    Text(Cow<'a, str>),
    Bytes(Vec<u8>),
}

impl Value<'_> {
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Null => None,
            Value::Text(t) => Some(t.as_bytes()),
            Value::Bytes(b) => Some(b),
        }
    }
}

/// The fields of one JSON entry that the carrier reads.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct JsonEntry<'a> {
    pub message: Value<'a>,
    pub identifier: Value<'a>,
    pub comm: Value<'a>,
    pub transport: Value<'a>,
    pub unit: Value<'a>,
    pub user_unit: Value<'a>,
    pub realtime: Value<'a>,
    pub source_realtime: Value<'a>,
    pub pid: Value<'a>,
    pub syslog_pid: Value<'a>,
    pub boot_id: Value<'a>,
}

impl JsonEntry<'_> {
    pub fn carried(&self) -> CarriedFields<'_> {
        CarriedFields {
            message: self.message.bytes(),
            identifier: self.identifier.bytes().or(self.comm.bytes()),
            transport: self.transport.bytes(),
            unit: self.unit.bytes().or(self.user_unit.bytes()),
            realtime: self.source_realtime.bytes().or(self.realtime.bytes()),
            pid: self.pid.bytes().or(self.syslog_pid.bytes()),
            boot: self.boot_id.bytes(),
        }
    }
}

/// Parses one line of `journalctl -o json` output.
pub fn json_entry(line: &[u8]) -> Result<JsonEntry<'_>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(line);
    let entry = de.deserialize_map(EntryVisitor)?;
    de.end()?;
    Ok(entry)
}

struct EntryVisitor;

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = JsonEntry<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a journal entry object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonEntry<'de>, A::Error> {
        let mut entry = JsonEntry::default();
        while let Some(key) = map.next_key::<Key>()? {
            let slot = match key {
                Key::Message => &mut entry.message,
                Key::Identifier => &mut entry.identifier,
                Key::Comm => &mut entry.comm,
                Key::Transport => &mut entry.transport,
                Key::Unit => &mut entry.unit,
                Key::UserUnit => &mut entry.user_unit,
                Key::Realtime => &mut entry.realtime,
                Key::SourceRealtime => &mut entry.source_realtime,
                Key::Pid => &mut entry.pid,
                Key::SyslogPid => &mut entry.syslog_pid,
                Key::BootId => &mut entry.boot_id,
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = map.next_value::<Value>()?;
        }
        Ok(entry)
    }
}

/// The field names the carrier reads; every other name is skipped.
enum Key {
    Message,
    Identifier,
    Comm,
    Transport,
    Unit,
    UserUnit,
    Realtime,
    SourceRealtime,
    Pid,
    SyslogPid,
    BootId,
    Other,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Key, E> {
        Ok(match name {
            "MESSAGE" => Key::Message,
            "SYSLOG_IDENTIFIER" => Key::Identifier,
            "_COMM" => Key::Comm,
            "_TRANSPORT" => Key::Transport,
            "UNIT" => Key::Unit,
            "USER_UNIT" => Key::UserUnit,
            "__REALTIME_TIMESTAMP" => Key::Realtime,
            "_SOURCE_REALTIME_TIMESTAMP" => Key::SourceRealtime,
            "_PID" => Key::Pid,
            "SYSLOG_PID" => Key::SyslogPid,
            "_BOOT_ID" => Key::BootId,
            _ => Key::Other,
        })
    }
}

impl<'de> de::Deserialize<'de> for Value<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value<'de>, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, an array of bytes, an array of values or null")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Value<'de>, E> {
        Ok(Value::Text(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value<'de>, E> {
        Ok(Value::Text(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value<'de>, E> {
        Ok(Value::Text(Cow::Owned(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value<'de>, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value<'de>, E> {
        Ok(Value::Null)
    }

    /// Either the bytes of one non-UTF-8 value, or the values of a repeated field, of
    /// which the first non-null one is kept.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value<'de>, A::Error> {
        let mut bytes = Vec::new();
        let mut first = Value::Null;
        while let Some(element) = seq.next_element::<Element>()? {
            match element {
                Element::Byte(b) => bytes.push(b),
                Element::Value(v) if first == Value::Null => first = v,
                Element::Value(_) => {}
            }
        }
        Ok(match first {
            Value::Null if !bytes.is_empty() => Value::Bytes(bytes),
            v => v,
        })
    }
}

/// An element of a JSON array value: a byte, or a whole value of a repeated field.
enum Element<'a> {
    Byte(u8),
    Value(Value<'a>),
}

impl<'de> de::Deserialize<'de> for Element<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Element<'de>, D::Error> {
        d.deserialize_any(ElementVisitor)
    }
}

struct ElementVisitor;

impl<'de> Visitor<'de> for ElementVisitor {
    type Value = Element<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a byte value or a field value")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Element<'de>, E> {
        u8::try_from(v).map(Element::Byte).map_err(|_| E::custom(format!("byte value {v} is over 255")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Element<'de>, E> {
        u8::try_from(v).map(Element::Byte).map_err(|_| E::custom(format!("byte value {v} is out of range")))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Element<'de>, E> {
        ValueVisitor.visit_borrowed_str(v).map(Element::Value)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Element<'de>, E> {
        ValueVisitor.visit_str(v).map(Element::Value)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Element<'de>, E> {
        Ok(Element::Value(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Element<'de>, A::Error> {
        ValueVisitor.visit_seq(seq).map(Element::Value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_value_is_an_array_of_bytes() {
        // Real line shape of the derived fedora37 json.
        let line = br#"{"WP_OBJECT":[16,14,133,253,170,170,0,0],"MESSAGE":[102,111,111,10,98,97,114],"SYSLOG_IDENTIFIER":"wireplumber"}"#;
        let entry = json_entry(line).unwrap();
        assert_eq!(entry.message, Value::Bytes(b"foo\nbar".to_vec()));
        assert_eq!(entry.identifier.bytes(), Some(&b"wireplumber"[..]));
    }

    #[test]
    fn repeated_field_keeps_its_first_value_and_null_is_absent() {
        let line = br#"{ "MESSAGE" : [ null, "first", "second" ], "_COMM" : "sddm", "UNIT" : null }"#;
        let entry = json_entry(line).unwrap();
        assert_eq!(entry.message.bytes(), Some(&b"first"[..]));
        let carried = entry.carried();
        assert_eq!(carried.identifier, Some(&b"sddm"[..]));
        assert_eq!(carried.unit, None);
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let line = br#"{"SYSLOG_RAW":"<28>Oct 24 00:00:03 rpc.idmapd[406]: x\n","MESSAGE":"a\tb\u00e9"}"#;
        let entry = json_entry(line).unwrap();
        assert_eq!(entry.message.bytes(), Some("a\tb\u{e9}".as_bytes()));
    }

    #[test]
    fn not_an_entry_is_an_error() {
        for bad in [&b"[1,2]"[..], b"{\"MESSAGE\":[300]}", b"{\"MESSAGE\":\"x\"} trailing", b"", b"{"] {
            assert!(json_entry(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
