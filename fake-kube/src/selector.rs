//! Label and field selectors as the API server reads them from `labelSelector` and
//! `fieldSelector`: comma-separated terms `key=value`, `key==value`, `key!=value`, `key` and
//! `!key` (set-based `in`/`notin` are not supported and are refused).

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Term {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    terms: Vec<Term>,
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, String> {
        let mut terms = Vec::new();
        for raw in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if raw.contains(" in ") || raw.contains(" notin ") || raw.contains('(') {
                return Err(format!(
                    "set-based selector term {raw:?} is not supported by the fake API server"
                ));
            }
            let term = if let Some((k, v)) = raw.split_once("!=") {
                Term::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = raw.split_once("==") {
                Term::Equals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = raw.split_once('=') {
                Term::Equals(k.trim().into(), v.trim().into())
            } else if let Some(k) = raw.strip_prefix('!') {
                Term::Absent(k.trim().into())
            } else {
                Term::Exists(raw.into())
            };
            terms.push(term);
        }
        Ok(Selector { terms })
    }

    /// Whether `fields` (labels, or an object's selectable fields) satisfy every term.
    pub fn matches(&self, fields: &BTreeMap<String, String>) -> bool {
        self.terms.iter().all(|t| match t {
            Term::Equals(k, v) => fields.get(k) == Some(v),
            Term::NotEquals(k, v) => fields.get(k) != Some(v),
            Term::Exists(k) => fields.contains_key(k),
            Term::Absent(k) => !fields.contains_key(k),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Selector;
    use std::collections::BTreeMap;

    #[test]
    fn terms_combine_with_and() {
        let s = Selector::parse("a=1,b!=2,c,!d").unwrap();
        let mut f = BTreeMap::from([("a".to_string(), "1".to_string()), ("c".to_string(), String::new())]);
        assert!(s.matches(&f));
        f.insert("b".into(), "2".into());
        assert!(!s.matches(&f));
        assert!(Selector::parse("a in (1,2)").is_err());
    }
}
