//! PII redaction on ingest, before anything is stored: the same rules as the generated
//! collector (`templates/defaults/redaction.yaml`): attribute values matching a blocked value
//! pattern have the match replaced by `****`; attributes whose key matches a blocked key
//! pattern are masked whole. Span names, log bodies and exception messages/stacks go through
//! the value rules too. Extendable: `<data-dir>/redaction.yaml` (same format) adds patterns.
use anyhow::{Context, Result};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use regex::{Regex, RegexSet};
use serde::Deserialize;

pub const MASK: &str = "****";
const DEFAULT_RULES: &str = "defaults/redaction.yaml";

#[derive(Debug, Default, Deserialize)]
pub struct Rules {
    #[serde(default)]
    pub blocked_values: Vec<String>,
    #[serde(default)]
    pub blocked_key_patterns: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Redactor {
    values: Vec<Regex>,
    value_set: RegexSet,
    keys: RegexSet,
}

impl Redactor {
    /// The built-in rules plus, when given, the extra rules of `extra` (YAML text).
    pub fn new(extra: Option<&str>) -> Result<Redactor> {
        let builtin = crate::assets::TEMPLATES
            .get_file(DEFAULT_RULES)
            .and_then(|f| f.contents_utf8())
            .context("the built-in redaction rules are missing")?;
        let mut rules: Rules =
            serde_yaml_ng::from_str(builtin).context("parsing the built-in redaction rules")?;
        if let Some(text) = extra {
            let more: Rules = serde_yaml_ng::from_str(text).context("parsing redaction.yaml")?;
            rules.blocked_values.extend(more.blocked_values);
            rules.blocked_key_patterns.extend(more.blocked_key_patterns);
        }
        Redactor::from_rules(&rules)
    }

    pub fn from_rules(rules: &Rules) -> Result<Redactor> {
        let values = rules
            .blocked_values
            .iter()
            .map(|p| Regex::new(p).with_context(|| format!("invalid redaction pattern {p:?}")))
            .collect::<Result<Vec<_>>>()?;
        // Key patterns are anchored like the collector's (a full match of the key).
        let keys: Vec<String> = rules
            .blocked_key_patterns
            .iter()
            .map(|p| format!("^(?:{p})$"))
            .collect();
        Ok(Redactor {
            value_set: RegexSet::new(&rules.blocked_values)?,
            values,
            keys: RegexSet::new(&keys)?,
        })
    }

    /// `s` with every blocked value replaced by the mask; `None` when nothing matched.
    pub fn text(&self, s: &str) -> Option<String> {
        let hits = self.value_set.matches(s);
        if !hits.matched_any() {
            return None;
        }
        let mut out = s.to_string();
        for i in hits.iter() {
            out = self.values[i].replace_all(&out, MASK).into_owned();
        }
        Some(out)
    }

    pub fn in_place(&self, s: &mut String) {
        if let Some(r) = self.text(s) {
            *s = r;
        }
    }

    pub fn key_blocked(&self, key: &str) -> bool {
        self.keys.is_match(key)
    }

    pub fn attributes(&self, attrs: &mut [KeyValue]) {
        for kv in attrs {
            if self.key_blocked(&kv.key) {
                kv.value = Some(AnyValue {
                    value: Some(Value::StringValue(MASK.to_string())),
                });
            } else if let Some(v) = kv.value.as_mut() {
                self.any_value(v, 0);
            }
        }
    }

    pub fn any_value(&self, v: &mut AnyValue, depth: usize) {
        if depth > 64 {
            v.value = Some(Value::StringValue("…".to_string()));
            return;
        }
        match v.value.as_mut() {
            Some(Value::StringValue(s)) => self.in_place(s),
            Some(Value::ArrayValue(a)) => {
                for x in &mut a.values {
                    self.any_value(x, depth + 1);
                }
            }
            Some(Value::KvlistValue(l)) => {
                for kv in &mut l.values {
                    if self.key_blocked(&kv.key) {
                        kv.value = Some(AnyValue {
                            value: Some(Value::StringValue(MASK.to_string())),
                        });
                    } else if let Some(x) = kv.value.as_mut() {
                        self.any_value(x, depth + 1);
                    }
                }
            }
            Some(Value::BytesValue(_)) => {
                // opaque bytes are not stored as text; nothing to match
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    fn s(kv: &KeyValue) -> &str {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Value::StringValue(s)) => s,
            _ => "",
        }
    }

    #[test]
    fn the_collector_rules_apply() {
        let r = Redactor::new(None).unwrap();
        let mut attrs = vec![
            kv("user.email", "write to jane.doe@example.com now"),
            kv("card", "4111 1111 1111 1111"),
            kv("ssn", "123-45-6789"),
            kv("http.request.header.authorization", "Basic abc"),
            kv("db.password", "hunter2"),
            kv("http.route", "/orders/{id}"),
        ];
        r.attributes(&mut attrs);
        assert_eq!(s(&attrs[0]), "write to **** now");
        assert_eq!(s(&attrs[1]), "****");
        assert_eq!(s(&attrs[2]), "****");
        assert_eq!(s(&attrs[3]), "****");
        assert_eq!(s(&attrs[4]), "****");
        assert_eq!(s(&attrs[5]), "/orders/{id}");
        assert_eq!(r.text("Bearer abc.def"), Some("****".to_string()));
    }

    #[test]
    fn extra_rules_extend() {
        let r = Redactor::new(Some("blocked_values: [\"ACME-[0-9]+\"]\n")).unwrap();
        assert_eq!(r.text("id ACME-123"), Some("id ****".into()));
    }
}
