//! `if` conditions: whether a job runs, decided once when its pipeline is submitted, from
//! what is known then (the commit's branch, tag and event, and the job's own variables).
//!
//! ```yaml
//! - name: deploy
//!   if: $FLOTILLA_BRANCH == "main" && $FLOTILLA_EVENT != "pull_request"
//! ```
//!
//! The language is GitLab's `rules: if` without regular expressions: `$VARIABLES`, quoted
//! strings, `null`, `true`, `false`, `==`, `!=`, `=~` and `!~` (glob patterns: `*` is any run
//! of characters, `?` one character), `!`, `&&`, `||` and parentheses. A variable alone is
//! true when it is set and not empty; an unset one equals `null`.
//!
//! Written by hand rather than with an expression crate because it runs inside `apply`: it
//! must give every replica the same answer on every architecture (no floating point, no
//! platform maths library), and its cost must be bounded on hostile input. The parser limits
//! the text to `MAX_CONDITION_BYTES` and nesting to `MAX_CONDITION_DEPTH` (recursion is
//! bounded by it); deciding a pipeline draws on a `Fuel` budget that every comparison pays
//! for at its worst-case cost, so a pipeline whose conditions would take more is refused.

/// Longest condition accepted.
pub const MAX_CONDITION_BYTES: usize = 1024;
/// Deepest nesting of parentheses and `!`.
pub const MAX_CONDITION_DEPTH: usize = 32;
/// Work one pipeline's conditions may take, in units of one step of a comparison.
pub const CONDITION_FUEL_PER_PIPELINE: u64 = 64 * 1024 * 1024;

/// Reads a job's `if`: a string, or in a pipeline file (a self-describing format) also a
/// bare `true` or `false` (YAML's `if: false` disables a job), kept as the text `"false"`.
/// Binary encodings of the log and snapshots read the plain `Option<String>`.
pub(crate) fn deserialize_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    use serde::Deserialize;
    if !deserializer.is_human_readable() {
        return Option::<String>::deserialize(deserializer);
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Text {
        Bool(bool),
        String(String),
    }
    Ok(Option::<Text>::deserialize(deserializer)?.map(|t| match t {
        Text::Bool(b) => b.to_string(),
        Text::String(s) => s,
    }))
}

/// A parsed condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    root: Node,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Any(Vec<Node>),
    All(Vec<Node>),
    Not(Box<Node>),
    Compare { left: Operand, op: Op, right: Operand },
    Truthy(Operand),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Operand {
    Variable(String),
    Text(String),
    Null,
    Bool(bool),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Equal,
    NotEqual,
    Matches,
    NotMatches,
}

/// The work left for deciding conditions; spent by each comparison.
#[derive(Debug)]
pub struct Fuel {
    pub left: u64,
}

/// Deciding took more work than the budget allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfFuel;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Variable(String),
    Text(String),
    Word(String),
    Equal,
    NotEqual,
    Matches,
    NotMatches,
    Not,
    And,
    Or,
    Open,
    Close,
}

impl Condition {
    /// Parses `text`, or says what is wrong with it.
    pub fn parse(text: &str) -> Result<Condition, String> {
        if text.len() > MAX_CONDITION_BYTES {
            return Err(format!(
                "{} bytes is longer than the limit of {MAX_CONDITION_BYTES}",
                text.len()
            ));
        }
        let tokens = tokenize(text)?;
        if tokens.is_empty() {
            return Err("is empty".into());
        }
        let mut parser = Parser { tokens, at: 0 };
        let root = parser.any(0)?;
        if let Some(t) = parser.tokens.get(parser.at) {
            return Err(format!("unexpected {} after the end of the condition", describe(t)));
        }
        Ok(Condition { root })
    }

    /// Whether the condition holds when variables have the values `lookup` gives.
    pub fn holds<'v>(&self, lookup: &impl Fn(&str) -> Option<&'v str>, fuel: &mut Fuel) -> Result<bool, OutOfFuel> {
        self.root.holds(lookup, fuel)
    }
}

impl Node {
    fn holds<'v>(&self, lookup: &impl Fn(&str) -> Option<&'v str>, fuel: &mut Fuel) -> Result<bool, OutOfFuel> {
        match self {
            Node::Any(nodes) => {
                for n in nodes {
                    if n.holds(lookup, fuel)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Node::All(nodes) => {
                for n in nodes {
                    if !n.holds(lookup, fuel)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Node::Not(n) => Ok(!n.holds(lookup, fuel)?),
            Node::Truthy(o) => {
                spend(fuel, 1)?;
                Ok(match o.value(lookup) {
                    Value::Text(t) => !t.is_empty(),
                    Value::Bool(b) => b,
                    Value::Null => false,
                })
            }
            Node::Compare { left, op, right } => {
                let (l, r) = (left.value(lookup), right.value(lookup));
                let (lt, rt) = (l.as_text(), r.as_text());
                match op {
                    Op::Equal | Op::NotEqual => {
                        spend(fuel, 1 + lt.map_or(0, str::len) as u64)?;
                        Ok((l == r) == (*op == Op::Equal))
                    }
                    Op::Matches | Op::NotMatches => {
                        // Null matches nothing; a pattern is the right-hand side.
                        let matched = match (lt, rt) {
                            (Some(value), Some(pattern)) => {
                                let worst = (value.len() as u64 + 1).saturating_mul(pattern.len() as u64 + 1);
                                spend(fuel, worst)?;
                                glob_matches(pattern.as_bytes(), value.as_bytes())
                            }
                            _ => false,
                        };
                        Ok(matched == (*op == Op::Matches))
                    }
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Value<'a> {
    Text(&'a str),
    Bool(bool),
    Null,
}

impl<'a> Value<'a> {
    fn as_text(self) -> Option<&'a str> {
        match self {
            Value::Text(t) => Some(t),
            Value::Bool(true) => Some("true"),
            Value::Bool(false) => Some("false"),
            Value::Null => None,
        }
    }
}

impl Operand {
    fn value<'a, 'v: 'a>(&'a self, lookup: &impl Fn(&str) -> Option<&'v str>) -> Value<'a> {
        match self {
            Operand::Variable(name) => lookup(name).map_or(Value::Null, Value::Text),
            Operand::Text(t) => Value::Text(t),
            Operand::Null => Value::Null,
            Operand::Bool(b) => Value::Bool(*b),
        }
    }
}

fn spend(fuel: &mut Fuel, units: u64) -> Result<(), OutOfFuel> {
    fuel.left = fuel.left.checked_sub(units).ok_or(OutOfFuel)?;
    Ok(())
}

/// Glob match with `*` (any run, `/` included) and `?` (one character, by byte); the greedy
/// algorithm that backs up to the last `*`, at most `|pattern| * |value|` steps.
fn glob_matches(pattern: &[u8], value: &[u8]) -> bool {
    let (mut p, mut v) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while v < value.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, v));
                p += 1;
            }
            Some(&c) if c == b'?' || c == value[v] => {
                p += 1;
                v += 1;
            }
            _ => match star {
                Some((sp, sv)) => {
                    p = sp + 1;
                    v = sv + 1;
                    star = Some((sp, sv + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    let two = |i: usize| bytes.get(i..i + 2);
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let (token, len) = match (c, two(i)) {
            (_, Some(b"==")) => (Token::Equal, 2),
            (_, Some(b"!=")) => (Token::NotEqual, 2),
            (_, Some(b"=~")) => (Token::Matches, 2),
            (_, Some(b"!~")) => (Token::NotMatches, 2),
            (_, Some(b"&&")) => (Token::And, 2),
            (_, Some(b"||")) => (Token::Or, 2),
            (b'!', _) => (Token::Not, 1),
            (b'(', _) => (Token::Open, 1),
            (b')', _) => (Token::Close, 1),
            (b'"' | b'\'', _) => {
                let (s, len) = quoted(&text[i..])?;
                (Token::Text(s), len)
            }
            (b'$', _) => {
                let len = word_len(&bytes[i + 1..]);
                if len == 0 || bytes[i + 1].is_ascii_digit() {
                    return Err(format!("a variable name must follow '$' at byte {i}"));
                }
                (Token::Variable(text[i + 1..i + 1 + len].to_string()), len + 1)
            }
            _ if c.is_ascii_alphabetic() => {
                let len = word_len(&bytes[i..]);
                (Token::Word(text[i..i + len].to_string()), len)
            }
            _ => {
                let ch = text[i..].chars().next().unwrap_or('?');
                return Err(format!("unexpected {ch:?} at byte {i}"));
            }
        };
        tokens.push(token);
        i += len;
    }
    Ok(tokens)
}

fn word_len(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
        .count()
}

/// A quoted string at the start of `s` (`\` escapes the quote and itself); its value and
/// how many bytes it took.
fn quoted(s: &str) -> Result<(String, usize), String> {
    let quote = s.as_bytes()[0];
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((at, ch)) = chars.next() {
        match ch {
            '\\' => match chars.next() {
                Some((_, e)) => out.push(e),
                None => break,
            },
            c if c as u32 == u32::from(quote) => return Ok((out, at + 1)),
            c => out.push(c),
        }
    }
    Err("a quoted string is not closed".into())
}

fn describe(t: &Token) -> String {
    match t {
        Token::Variable(v) => format!("${v}"),
        Token::Text(s) => format!("{s:?}"),
        Token::Word(w) => format!("'{w}'"),
        Token::Equal => "'=='".into(),
        Token::NotEqual => "'!='".into(),
        Token::Matches => "'=~'".into(),
        Token::NotMatches => "'!~'".into(),
        Token::Not => "'!'".into(),
        Token::And => "'&&'".into(),
        Token::Or => "'||'".into(),
        Token::Open => "'('".into(),
        Token::Close => "')'".into(),
    }
}

/// Recursive descent; `depth` counts open parentheses and `!` so recursion stays bounded.
struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn any(&mut self, depth: usize) -> Result<Node, String> {
        let mut nodes = vec![self.all(depth)?];
        while self.peek() == Some(&Token::Or) {
            self.at += 1;
            nodes.push(self.all(depth)?);
        }
        Ok(if nodes.len() == 1 {
            nodes.remove(0)
        } else {
            Node::Any(nodes)
        })
    }

    fn all(&mut self, depth: usize) -> Result<Node, String> {
        let mut nodes = vec![self.unary(depth)?];
        while self.peek() == Some(&Token::And) {
            self.at += 1;
            nodes.push(self.unary(depth)?);
        }
        Ok(if nodes.len() == 1 {
            nodes.remove(0)
        } else {
            Node::All(nodes)
        })
    }

    fn unary(&mut self, depth: usize) -> Result<Node, String> {
        match self.peek() {
            Some(Token::Not) | Some(Token::Open) if depth >= MAX_CONDITION_DEPTH => {
                Err(format!("nests deeper than the limit of {MAX_CONDITION_DEPTH}"))
            }
            Some(Token::Not) => {
                self.at += 1;
                Ok(Node::Not(Box::new(self.unary(depth + 1)?)))
            }
            Some(Token::Open) => {
                self.at += 1;
                let inner = self.any(depth + 1)?;
                match self.peek() {
                    Some(Token::Close) => {
                        self.at += 1;
                        Ok(inner)
                    }
                    Some(t) => Err(format!("expected ')' but found {}", describe(t))),
                    None => Err("a '(' is not closed".into()),
                }
            }
            _ => self.comparison(),
        }
    }

    fn comparison(&mut self) -> Result<Node, String> {
        let left = self.operand()?;
        let op = match self.peek() {
            Some(Token::Equal) => Op::Equal,
            Some(Token::NotEqual) => Op::NotEqual,
            Some(Token::Matches) => Op::Matches,
            Some(Token::NotMatches) => Op::NotMatches,
            _ => return Ok(Node::Truthy(left)),
        };
        self.at += 1;
        let right = self.operand()?;
        Ok(Node::Compare { left, op, right })
    }

    fn operand(&mut self) -> Result<Operand, String> {
        let Some(t) = self.tokens.get(self.at).cloned() else {
            return Err("ends where a value was expected".into());
        };
        self.at += 1;
        match t {
            Token::Variable(v) => Ok(Operand::Variable(v)),
            Token::Text(s) => Ok(Operand::Text(s)),
            Token::Word(w) => match w.as_str() {
                "null" => Ok(Operand::Null),
                "true" => Ok(Operand::Bool(true)),
                "false" => Ok(Operand::Bool(false)),
                _ => Err(format!(
                    "unknown word '{w}': variables start with '$' and strings are quoted"
                )),
            },
            other => Err(format!("expected a value but found {}", describe(&other))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(text: &str, vars: &[(&str, &str)]) -> bool {
        let lookup = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        let mut fuel = Fuel { left: u64::MAX };
        Condition::parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .holds(&lookup, &mut fuel)
            .unwrap()
    }

    #[test]
    fn branches_tags_and_events_decide() {
        let main = [("FLOTILLA_BRANCH", "main"), ("FLOTILLA_EVENT", "push")];
        assert!(eval(r#"$FLOTILLA_BRANCH == "main""#, &main));
        assert!(!eval(r#"$FLOTILLA_BRANCH != 'main'"#, &main));
        assert!(eval(
            r#"$FLOTILLA_BRANCH == "main" && $FLOTILLA_EVENT != "pull_request""#,
            &main
        ));
        assert!(!eval(r#"$FLOTILLA_TAG"#, &main), "an unset variable is false");
        assert!(eval(r#"$FLOTILLA_TAG == null"#, &main));
        assert!(!eval(r#"$FLOTILLA_TAG == """#, &main), "unset is not empty");
        assert!(eval(r#"$FLOTILLA_TAG =~ "v*" || $FLOTILLA_BRANCH =~ "ma?n""#, &main));
        assert!(eval(r#"!($FLOTILLA_TAG =~ "v*") && !false"#, &main));
        assert!(eval(r#"$A || $B && $C"#, &[("A", "1")]), "&& binds tighter than ||");
        assert!(!eval(r#"($A || $B) && $C"#, &[("A", "1")]));
        assert!(eval(r#""a\"b" == 'a"b'"#, &[]));
        assert!(eval("true", &[]) && !eval("false", &[]) && !eval("null", &[]));
    }

    #[test]
    fn a_bare_boolean_in_a_pipeline_file_is_a_condition() {
        let job = |json: &str| -> crate::JobSpec {
            serde_json::from_str(&format!(
                r#"{{"name": "a", "steps": ["true"], "resources": {{"cpu_millis": 1, "memory_mib": 1}}, {json}}}"#
            ))
            .unwrap()
        };
        assert_eq!(job(r#""if": false"#).condition.as_deref(), Some("false"));
        assert_eq!(job(r#""if": "$A == 'b'""#).condition.as_deref(), Some("$A == 'b'"));
        assert_eq!(job(r#""if": null"#).condition, None);
        assert_eq!(job(r#""manual": true"#).condition, None);
        assert!(
            serde_json::from_str::<crate::JobSpec>(
                r#"{"name": "a", "steps": [], "resources": {"cpu_millis": 1, "memory_mib": 1}, "if": 3}"#
            )
            .is_err()
        );
    }

    #[test]
    fn globs_match_whole_values() {
        for (p, v, m) in [
            ("release/*", "release/1.2", true),
            ("release/*", "xrelease/1", false),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("v?.*", "v1.20", true),
            ("**a", "bbba", true),
        ] {
            assert_eq!(glob_matches(p.as_bytes(), v.as_bytes()), m, "{p} ~ {v}");
        }
    }

    #[test]
    fn malformed_conditions_say_why() {
        for (text, says) in [
            ("", "empty"),
            ("$", "variable name"),
            ("$1A", "variable name"),
            ("main", "unknown word"),
            ("$A ==", "value was expected"),
            ("($A", "not closed"),
            ("$A)", "after the end"),
            ("\"abc", "not closed"),
            ("$A === $B", "unexpected '='"),
            ("$A & $B", "unexpected '&'"),
            ("$A && || $B", "expected a value"),
        ] {
            let e = Condition::parse(text).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
        let deep = format!("{}$A{}", "(".repeat(40), ")".repeat(40));
        assert!(Condition::parse(&deep).unwrap_err().contains("deeper"));
        let nots = format!("{}$A", "!".repeat(40));
        assert!(Condition::parse(&nots).unwrap_err().contains("deeper"));
        let long = format!("$A == \"{}\"", "x".repeat(MAX_CONDITION_BYTES));
        assert!(Condition::parse(&long).unwrap_err().contains("limit"));
    }

    #[test]
    fn costly_conditions_run_out_of_fuel() {
        let value = "a".repeat(1000);
        let lookup = |_: &str| Some(value.as_str());
        let c = Condition::parse(r#"$V =~ "*a*a*a*a*b""#).unwrap();
        let mut fuel = Fuel { left: 1000 };
        assert_eq!(c.holds(&lookup, &mut fuel), Err(OutOfFuel));
        let mut fuel = Fuel { left: 1_000_000 };
        assert_eq!(c.holds(&lookup, &mut fuel), Ok(false));
    }
}
