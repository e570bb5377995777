//! IAM conditions: the part of CEL that role bindings use for resources and time.
//!
//! Supported: `resource.name`, `resource.type`, `resource.service` and `request.time`; string literals in single
//! or double quotes; `timestamp("RFC 3339")`; `==`, `!=`, `<`, `<=`, `>`, `>=`; `.startsWith()`, `.endsWith()`
//! and `.contains()` on strings; `&&`, `||`, `!`, parentheses, `true` and `false`.
//!
//! As in Google, a condition that cannot be evaluated (a syntax error, an attribute or function the emulator does
//! not know, a type mismatch) grants nothing.

use chrono::{DateTime, Utc};

/// What a condition may look at: the resource a call acts on, and when.
#[derive(Clone, Debug)]
pub struct Facts<'a> {
    /// Full resource name, as Google names it in conditions (Secret Manager by project number).
    pub name: &'a str,
    /// `secretmanager.googleapis.com/Secret`, `run.googleapis.com/Service`, ...
    pub kind: &'a str,
    /// `secretmanager.googleapis.com`, `run.googleapis.com`, ...
    pub service: &'a str,
    pub time: DateTime<Utc>,
}

impl<'a> Facts<'a> {
    /// The facts of resource `name`, its type and service read from the name's shape.
    pub fn of(name: &'a str, time: DateTime<Utc>) -> Self {
        let (kind, service) = if name.contains("/secrets/") {
            if name.contains("/versions/") {
                (
                    "secretmanager.googleapis.com/SecretVersion",
                    "secretmanager.googleapis.com",
                )
            } else {
                (
                    "secretmanager.googleapis.com/Secret",
                    "secretmanager.googleapis.com",
                )
            }
        } else if name.contains("/services/") && name.contains("/locations/") {
            if name.contains("/revisions/") {
                ("run.googleapis.com/Revision", "run.googleapis.com")
            } else {
                ("run.googleapis.com/Service", "run.googleapis.com")
            }
        } else if name.contains("/serviceAccounts/") {
            ("iam.googleapis.com/ServiceAccount", "iam.googleapis.com")
        } else {
            (
                "cloudresourcemanager.googleapis.com/Project",
                "cloudresourcemanager.googleapis.com",
            )
        };
        Facts {
            name,
            kind,
            service,
            time,
        }
    }
}

/// Whether `expression` holds for `facts`; `false` when it cannot be evaluated.
pub fn holds(expression: &str, facts: &Facts<'_>) -> bool {
    let Some(tokens) = tokenize(expression) else {
        return false;
    };
    let mut parser = Parser {
        tokens: &tokens,
        at: 0,
        facts,
    };
    match parser.or() {
        Some(Value::Bool(b)) if parser.at == tokens.len() => b,
        _ => false,
    }
}

/// Why `expression` cannot be CEL at all, found without knowing which attributes and functions exist: a string
/// that does not end, a parenthesis or bracket that does not match, an expression that ends with an operator.
/// Google refuses such a condition when the policy is set. `None` does not make it valid: what cannot be evaluated
/// still grants nothing ([`holds`]).
pub fn syntax_error(expression: &str) -> Option<String> {
    let chars: Vec<char> = expression.chars().collect();
    let mut open: Vec<(char, usize)> = Vec::new();
    // What is left of the expression outside strings and comments, for the trailing operator.
    let mut code = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            // A comment, to the end of its line.
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '"' || c == '\'' {
            match string_end(&chars, i) {
                Some(end) => {
                    code.push('x');
                    i = end;
                    continue;
                }
                None => return Some(format!("the string at column {column} does not end")),
            }
        }
        match c {
            '(' | '[' | '{' => open.push((c, column)),
            ')' | ']' | '}' => {
                let wanted = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                match open.pop() {
                    Some((o, _)) if o == wanted => {}
                    _ => return Some(format!("unexpected '{c}' at column {column}")),
                }
            }
            _ => {}
        }
        code.push(c);
        i += 1;
    }
    if let Some((o, column)) = open.pop() {
        return Some(format!("the '{o}' at column {column} is not closed"));
    }
    let trimmed = code.trim_end();
    [
        "&&", "||", "==", "!=", "<", ">", "!", ".", ",", "+", "-", "*", "/", "%", "?", ":",
    ]
    .iter()
    .any(|op| trimmed.ends_with(op))
    .then(|| "the expression ends with an operator".to_owned())
}

/// Where the CEL string starting with the quote at `start` ends (the index after it): `'x'` or `"x"` on one line,
/// triple-quoted `'''x'''` or `"""x"""`, raw (`r` or `R` before the quote) without escapes. `None` if it does not.
fn string_end(chars: &[char], start: usize) -> Option<usize> {
    let quote = chars[start];
    let is_word = |c: Option<&char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_');
    let raw = start > 0
        && matches!(chars[start - 1], 'r' | 'R')
        && !is_word(start.checked_sub(2).and_then(|p| chars.get(p)));
    let triple = chars.get(start + 1) == Some(&quote) && chars.get(start + 2) == Some(&quote);
    let width = if triple { 3 } else { 1 };
    let closes = |j: usize| (0..width).all(|k| chars.get(j + k) == Some(&quote));
    let mut j = start + width;
    loop {
        match chars.get(j)? {
            '\\' if !raw => j += 2,
            '\n' if !triple => return None,
            _ if closes(j) => return Some(j + width),
            _ => j += 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Op(&'static str),
}

fn tokenize(text: &str) -> Option<Vec<Token>> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                let d = *chars.get(i)?;
                i += 1;
                match d {
                    '\\' => {
                        s.push(*chars.get(i)?);
                        i += 1;
                    }
                    d if d == c => break,
                    d => s.push(d),
                }
            }
            out.push(Token::Str(s));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while chars
                .get(i)
                .is_some_and(|d| d.is_ascii_alphanumeric() || *d == '_')
            {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
        } else {
            let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let op = ["&&", "||", "==", "!=", "<=", ">="]
                .into_iter()
                .find(|op| two == *op)
                .or_else(|| {
                    ["!", "<", ">", "(", ")", ".", ","]
                        .into_iter()
                        .find(|op| op.starts_with(c))
                })?;
            i += op.len();
            out.push(Token::Op(op));
        }
    }
    Some(out)
}

#[derive(Clone, Debug, PartialEq)]
enum Value {
    Bool(bool),
    Str(String),
    Time(DateTime<Utc>),
}

struct Parser<'t, 'f> {
    tokens: &'t [Token],
    at: usize,
    facts: &'f Facts<'f>,
}

impl Parser<'_, '_> {
    fn peek_op(&self, op: &str) -> bool {
        matches!(self.tokens.get(self.at), Some(Token::Op(o)) if *o == op)
    }

    fn eat_op(&mut self, op: &str) -> bool {
        let found = self.peek_op(op);
        if found {
            self.at += 1;
        }
        found
    }

    fn or(&mut self) -> Option<Value> {
        let mut left = self.and()?;
        while self.eat_op("||") {
            let right = self.and()?;
            left = Value::Bool(as_bool(&left)? || as_bool(&right)?);
        }
        Some(left)
    }

    fn and(&mut self) -> Option<Value> {
        let mut left = self.unary()?;
        while self.eat_op("&&") {
            let right = self.unary()?;
            left = Value::Bool(as_bool(&left)? && as_bool(&right)?);
        }
        Some(left)
    }

    fn unary(&mut self) -> Option<Value> {
        if self.eat_op("!") {
            return Some(Value::Bool(!as_bool(&self.unary()?)?));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Option<Value> {
        let left = self.postfix()?;
        for op in ["==", "!=", "<=", ">=", "<", ">"] {
            if self.eat_op(op) {
                let right = self.postfix()?;
                let ordering = match (&left, &right) {
                    (Value::Str(a), Value::Str(b)) => a.cmp(b),
                    (Value::Time(a), Value::Time(b)) => a.cmp(b),
                    (Value::Bool(a), Value::Bool(b)) if matches!(op, "==" | "!=") => a.cmp(b),
                    _ => return None,
                };
                return Some(Value::Bool(match op {
                    "==" => ordering.is_eq(),
                    "!=" => !ordering.is_eq(),
                    "<" => ordering.is_lt(),
                    "<=" => ordering.is_le(),
                    ">" => ordering.is_gt(),
                    _ => ordering.is_ge(),
                }));
            }
        }
        Some(left)
    }

    /// A primary followed by method calls: `resource.name.startsWith("x")`.
    fn postfix(&mut self) -> Option<Value> {
        let mut value = self.primary()?;
        while self.eat_op(".") {
            let Some(Token::Ident(method)) = self.tokens.get(self.at).cloned() else {
                return None;
            };
            self.at += 1;
            let args = self.arguments()?;
            let (Value::Str(text), [Value::Str(arg)]) = (&value, args.as_slice()) else {
                return None;
            };
            value = Value::Bool(match method.as_str() {
                "startsWith" => text.starts_with(arg.as_str()),
                "endsWith" => text.ends_with(arg.as_str()),
                "contains" => text.contains(arg.as_str()),
                _ => return None,
            });
        }
        Some(value)
    }

    fn arguments(&mut self) -> Option<Vec<Value>> {
        if !self.eat_op("(") {
            return None;
        }
        let mut args = Vec::new();
        if self.eat_op(")") {
            return Some(args);
        }
        loop {
            args.push(self.or()?);
            if self.eat_op(")") {
                return Some(args);
            }
            if !self.eat_op(",") {
                return None;
            }
        }
    }

    fn primary(&mut self) -> Option<Value> {
        let token = self.tokens.get(self.at)?.clone();
        self.at += 1;
        match token {
            Token::Str(s) => Some(Value::Str(s)),
            Token::Op("(") => {
                let inner = self.or()?;
                self.eat_op(")").then_some(inner)
            }
            Token::Op(_) => None,
            Token::Ident(word) => match word.as_str() {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                "timestamp" => match self.arguments()?.as_slice() {
                    [Value::Str(text)] => DateTime::parse_from_rfc3339(text)
                        .ok()
                        .map(|t| Value::Time(t.with_timezone(&Utc))),
                    _ => None,
                },
                "resource" | "request" => {
                    if !self.eat_op(".") {
                        return None;
                    }
                    let Some(Token::Ident(field)) = self.tokens.get(self.at).cloned() else {
                        return None;
                    };
                    self.at += 1;
                    let f = self.facts;
                    match (word.as_str(), field.as_str()) {
                        ("resource", "name") => Some(Value::Str(f.name.to_string())),
                        ("resource", "type") => Some(Value::Str(f.kind.to_string())),
                        ("resource", "service") => Some(Value::Str(f.service.to_string())),
                        ("request", "time") => Some(Value::Time(f.time)),
                        _ => None,
                    }
                }
                _ => None,
            },
        }
    }
}

fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn at(name: &str) -> Facts<'_> {
        Facts::of(
            name,
            DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        )
    }

    #[test]
    fn the_guides_prefix_condition() {
        let e = r#"!resource.name.startsWith("projects/123/secrets/") || resource.name.startsWith("projects/123/secrets/litellm-")"#;
        assert!(holds(e, &at("projects/123/secrets/litellm-master-key")));
        assert!(holds(
            e,
            &at("projects/123/secrets/litellm-master-key/versions/2")
        ));
        assert!(!holds(e, &at("projects/123/secrets/team-b-master-key")));
        assert!(holds(e, &at("projects/p/locations/us-central1/services/litellm")));
        assert!(holds(e, &at("projects/123")));
    }

    #[test]
    fn types_services_and_time() {
        let f = at("projects/123/secrets/x/versions/1");
        assert!(holds(
            r#"resource.type == "secretmanager.googleapis.com/SecretVersion""#,
            &f
        ));
        assert!(holds("resource.service == 'secretmanager.googleapis.com'", &f));
        assert!(holds(r#"request.time < timestamp("2027-01-01T00:00:00Z")"#, &f));
        assert!(!holds(r#"request.time >= timestamp("2027-01-01T00:00:00Z")"#, &f));
        assert!(holds(
            r#"(resource.type != "run.googleapis.com/Service") && resource.name.endsWith("/1")"#,
            &f
        ));
        assert!(holds("true && !false", &f));
    }

    #[test]
    fn syntax_errors_are_found_without_refusing_cel_the_emulator_cannot_evaluate() {
        for (e, why) in [
            ("resource.name.startsWith(", "'(' at column 25 is not closed"),
            ("(true", "'(' at column 1 is not closed"),
            ("true)", "unexpected ')' at column 5"),
            ("resource.name == 'x", "string at column 18 does not end"),
            ("[1, 2)", "unexpected ')' at column 6"),
            ("true ||", "ends with an operator"),
            ("request.time < ", "ends with an operator"),
            ("true && // the rest is a comment", "ends with an operator"),
            ("'line\nbreak'", "string at column 1 does not end"),
            (r#""""unterminated triple ""#, "string at column 1 does not end"),
            (r#"r"raw \"#, "string at column 2 does not end"),
        ] {
            let found = syntax_error(e).unwrap_or_else(|| panic!("{e}"));
            assert!(found.contains(why), "{e}: {found}");
        }
        // Valid CEL, whether or not the emulator evaluates it.
        for e in [
            r#"resource.name.startsWith("projects/123/secrets/litellm-")"#,
            "request.time.getHours('Europe/Berlin') >= 9 && resource.name in ['a', 'b']",
            r#"resource.name.endsWith("(") || resource.name == 'it\'s'"#,
            r#"resource.name.startsWith(r"projects\") // it's a comment (with a parenthesis"#,
            r#"resource.name == """say "hi" (""" && resource.type != '''it's'''"#,
            "resource.name.startsWith('a') // ends here -\n && true",
            "has(resource.labels.team) ? resource.labels.team == 'a' : false",
            "{'a': 1}['a'] == 1",
        ] {
            assert_eq!(syntax_error(e), None, "{e}");
        }
    }

    #[test]
    fn what_cannot_be_evaluated_grants_nothing() {
        let f = at("projects/123/secrets/x");
        for e in [
            "",
            "resource.name",
            "resource.labels.team == 'a'",
            "resource.name.matches('x')",
            "resource.name.startsWith(",
            r#"request.time < "2027""#,
            "true ||",
            "(true",
            "true)",
            "'unterminated",
            "resource.name == 'projects/123/secrets/x' @",
        ] {
            assert!(!holds(e, &f), "{e}");
        }
    }
}
