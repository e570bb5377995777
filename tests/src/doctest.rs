//! The docs as tests: the shell blocks of `README.md` and `docs/*.md`, read in order with the directives the page
//! gives them. Pure: parsing, placeholders and output matching; `tests/tests/doc_blocks.rs` runs the blocks against
//! the local control plane and the emulator.
//!
//! A directive is an HTML comment (invisible on the rendered page) on the line before a fence, or anywhere for the
//! page-wide ones:
//!
//! | Directive | Meaning |
//! |---|---|
//! | `<!-- doc-test: skip: REASON -->` | The next shell block is not run; the runner prints REASON. |
//! | `<!-- doc-test: until: REGEX -->` | The next shell block watches (`-w`): it runs until a line of its output matches REGEX, then is stopped. |
//! | `<!-- doc-test: exit: N -->` | The next shell block ends with exit status N (a `plan` that finds changes exits 2). |
//! | `<!-- doc-test: output -->` | The next fenced block is the output of the shell block before it (see [`matches`]). |
//! | `<!-- doc-test: where NAME=VALUE ... -->` | From here on, the placeholder word NAME in commands stands for VALUE. |
//! | `<!-- doc-test: setup: COMMANDS -->` | Runs COMMANDS here, unseen by readers: the state a page assumes (a cluster in trouble already has a deployment). |
//! | `<!-- doc-test: env NAME=VALUE ... -->` | From here on, blocks run with these environment variables (a reader's own values). |
//!
//! Every other ` ```bash ` / ` ```sh ` / ` ```shell ` block runs.

use std::collections::BTreeMap;

/// What the runner does with a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Run to completion; any other exit status fails the page.
    Run { exit: i32 },
    /// Run until a line of the output matches this regular expression, then stop it (a `-w` watch).
    Until(String),
    /// Not run, for this reason.
    Skip(String),
}

/// One shell block of a page, ready to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// 1-based line of the opening fence.
    pub line: usize,
    /// The commands, placeholders replaced.
    pub code: String,
    pub mode: Mode,
    /// Environment variables the page sets for it.
    pub env: BTreeMap<String, String>,
    /// The output the page shows for it, when it shows one.
    pub output: Option<String>,
}

/// A directive the page gets wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadDirective {
    pub line: usize,
    pub problem: String,
}

const SHELLS: [&str; 3] = ["bash", "sh", "shell"];

/// The shell blocks of a Markdown page, in order, with what its directives say about each.
pub fn blocks(page: &str) -> Result<Vec<Block>, BadDirective> {
    let lines: Vec<&str> = page.lines().collect();
    let mut out: Vec<Block> = Vec::new();
    let mut where_: BTreeMap<String, String> = BTreeMap::new();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut pending: Option<(usize, Directive)> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if let Some(directive) = parse_directive(line).transpose() {
            let directive = directive.map_err(|problem| BadDirective { line: i + 1, problem })?;
            match directive {
                Directive::Where(pairs) => where_.extend(pairs),
                Directive::Env(pairs) => env.extend(pairs),
                Directive::Setup(code) => out.push(Block {
                    line: i + 1,
                    code: substitute(&code, &where_),
                    mode: Mode::Run { exit: 0 },
                    env: env.clone(),
                    output: None,
                }),
                other => {
                    if let Some((at, _)) = pending {
                        return Err(BadDirective {
                            line: at,
                            problem: "a directive with no fenced block after it".into(),
                        });
                    }
                    pending = Some((i + 1, other));
                }
            }
            i += 1;
            continue;
        }
        let Some(info) = line.strip_prefix("```") else {
            i += 1;
            continue;
        };
        // A fenced block: collect it, with the fence's indentation removed.
        let fence_line = i + 1;
        let indent = lines[i].len() - lines[i].trim_start().len();
        let mut body = Vec::new();
        i += 1;
        while i < lines.len() && lines[i].trim() != "```" {
            let l = lines[i];
            body.push(l.get(indent.min(l.len() - l.trim_start().len())..).unwrap_or(l));
            i += 1;
        }
        i += 1; // the closing fence
        let body = body.join("\n");
        let directive = pending.take().map(|(_, d)| d);
        let lang = info.split_whitespace().next().unwrap_or("");
        if SHELLS.contains(&lang) {
            let mode = match directive {
                None | Some(Directive::Where(_) | Directive::Env(_) | Directive::Setup(_)) => {
                    Mode::Run { exit: 0 }
                }
                Some(Directive::Exit(exit)) => Mode::Run { exit },
                Some(Directive::Skip(reason)) => Mode::Skip(reason),
                Some(Directive::Until(text)) => Mode::Until(text),
                Some(Directive::Output) => {
                    return Err(BadDirective {
                        line: fence_line,
                        problem: "`output` names the block that shows an output, not a shell block".into(),
                    });
                }
            };
            out.push(Block {
                line: fence_line,
                code: substitute(&body, &where_),
                mode,
                env: env.clone(),
                output: None,
            });
        } else if directive == Some(Directive::Output) {
            match out.last_mut() {
                Some(block) if block.output.is_none() => block.output = Some(body),
                _ => {
                    return Err(BadDirective {
                        line: fence_line,
                        problem: "an output with no shell block before it".into(),
                    });
                }
            }
        } else if let Some(d) = directive {
            return Err(BadDirective {
                line: fence_line,
                problem: format!("{d:?} before a {lang:?} block, which is not a shell block"),
            });
        }
    }
    match pending {
        Some((line, _)) => Err(BadDirective {
            line,
            problem: "a directive with no fenced block after it".into(),
        }),
        None => Ok(out),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Directive {
    Skip(String),
    Until(String),
    Exit(i32),
    Output,
    Where(Vec<(String, String)>),
    Env(Vec<(String, String)>),
    Setup(String),
}

/// `Ok(None)` for a line that is not a directive.
fn parse_directive(line: &str) -> Result<Option<Directive>, String> {
    let Some(rest) = line
        .strip_prefix("<!-- doc-test:")
        .and_then(|r| r.strip_suffix("-->"))
    else {
        return Ok(None);
    };
    let rest = rest.trim();
    let (word, arg) = rest.split_once([' ', ':']).unwrap_or((rest, ""));
    let arg = arg.trim_start_matches(':').trim();
    let directive = match word {
        "skip" if !arg.is_empty() => Directive::Skip(arg.to_owned()),
        "skip" => return Err("`skip` needs a reason: <!-- doc-test: skip: REASON -->".into()),
        "until" if !arg.is_empty() => Directive::Until(arg.to_owned()),
        "until" => return Err("`until` needs the text to wait for".into()),
        "exit" => Directive::Exit(
            arg.parse()
                .map_err(|_| format!("`exit` needs a status, not {arg:?}"))?,
        ),
        "output" => Directive::Output,
        "setup" if !arg.is_empty() => Directive::Setup(arg.to_owned()),
        "setup" => return Err("`setup` needs commands".into()),
        "where" => Directive::Where(pairs(arg)?),
        "env" => Directive::Env(pairs(arg)?),
        other => return Err(format!("unknown directive {other:?}")),
    };
    Ok(Some(directive))
}

fn pairs(arg: &str) -> Result<Vec<(String, String)>, String> {
    let pairs: Vec<_> = arg
        .split_whitespace()
        .map(|pair| {
            pair.split_once('=')
                .filter(|(name, _)| !name.is_empty())
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .ok_or_else(|| format!("{pair:?} is not NAME=VALUE"))
        })
        .collect::<Result<_, _>>()?;
    if pairs.is_empty() {
        return Err("no NAME=VALUE given".into());
    }
    Ok(pairs)
}

/// `code` with each placeholder replaced where it stands as a whole word (not inside `MY_PROJECT_ID` or
/// `$PROJECT_ID`).
pub fn substitute(code: &str, where_: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(code.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let prefixed = out.ends_with('$');
        match where_.get(word.as_str()) {
            Some(value) if !prefixed => out.push_str(value),
            _ => out.push_str(word),
        }
        word.clear();
    };
    for c in code.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Whether `actual` shows what the page documents as the output. Each documented line other than `...` must
/// appear in `actual`, in order, where a line matches when it has the same words (runs of spaces and tabs are
/// one separator) except that a word mixing digits with other characters (a time, an age, a hash, a revision
/// name) stands for any such word. A plain number (a version, a count) must be the same. `Err` names the first documented line not found.
pub fn matches(documented: &str, actual: &str) -> Result<(), String> {
    let actual: Vec<Vec<&str>> = actual.lines().map(|l| l.split_whitespace().collect()).collect();
    let mut from = 0;
    for line in documented.lines() {
        let want: Vec<&str> = line.split_whitespace().collect();
        if want.is_empty() || want == ["..."] {
            continue;
        }
        match actual[from..].iter().position(|got| same_words(&want, got)) {
            Some(at) => from += at + 1,
            None => return Err(line.to_owned()),
        }
    }
    Ok(())
}

fn same_words(want: &[&str], got: &[&str]) -> bool {
    let has_digit = |w: &str| w.chars().any(|c| c.is_ascii_digit());
    let number = |w: &str| w.chars().all(|c| c.is_ascii_digit());
    want.len() == got.len()
        && want
            .iter()
            .zip(got)
            .all(|(w, g)| w == g || (has_digit(w) && has_digit(g) && !number(w)))
}

/// A relative link of a page: `[text](target)` where target is neither a URL nor an e-mail address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub line: usize,
    /// The path, relative to the page's directory (empty for a link within the page).
    pub path: String,
    /// The heading anchor after `#`, if any.
    pub anchor: Option<String>,
}

/// The relative links of a page, outside fenced blocks.
pub fn links(page: &str) -> Vec<Link> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (i, line) in page.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Code spans are not links (a regular expression may hold `](`).
        let prose: String = line.split('`').step_by(2).collect();
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let Some(end) = rest.find(')') else { break };
            let target = &rest[..end];
            rest = &rest[end..];
            if target.contains("://") || target.starts_with("mailto:") || target.contains(' ') {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor.to_owned())),
                None => (target, None),
            };
            out.push(Link {
                line: i + 1,
                path: path.to_owned(),
                anchor,
            });
        }
    }
    out
}

/// The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as `-`.
pub fn anchors(page: &str) -> std::collections::BTreeSet<String> {
    let mut fenced = false;
    page.lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced && line.starts_with('#')
        })
        .map(|line| {
            line.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

/// The tests a page names as proof: in a paragraph that links a `.rs` file, each backticked snake_case name after
/// its last such link, up to the next list item or link (e.g. `` [`flows.rs`](tests/tests/flows.rs): `a_change_is_put_back` ``), as (line, file, name).
pub fn named_tests(page: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut start = 1;
    for paragraph in page.split("\n\n") {
        let paragraph_links = links(paragraph);
        let mut last: Option<(usize, String, usize)> = None; // (line, file, byte offset after the link)
        for link in paragraph_links.iter().filter(|l| l.path.ends_with(".rs")) {
            let needle = format!("]({})", link.path);
            if let Some(at) = paragraph.find(&needle) {
                last = Some((start + link.line - 1, link.path.clone(), at + needle.len()));
            }
        }
        if let Some((line, file, after)) = last {
            // Up to the next list item or link: the names that follow this link, not another claim's.
            let tail = &paragraph[after..];
            let end = [tail.find("\n- "), tail.find("](")]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(tail.len());
            for (i, word) in tail[..end].split('`').enumerate() {
                let is_name = i % 2 == 1
                    && word.contains('_')
                    && word
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if is_name {
                    out.push((line, file.clone(), word.to_owned()));
                }
            }
        }
        start += paragraph.lines().count() + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const PAGE: &str = "\
# A page

<!-- doc-test: where PROJECT_ID=my-project REGION=us-central1 -->
<!-- doc-test: env DATABASE_URL=postgres://db -->

```bash
gcloud secrets list --project PROJECT_ID   # in REGION
echo $PROJECT_ID MY_PROJECT_ID
```

<!-- doc-test: output -->
```text
NAME  CREATED
x     2026-01-01
```

- a list item:

  <!-- doc-test: skip: needs real Google -->
  ```bash
  gcloud services enable run.googleapis.com
  ```

```yaml
a: b
```

<!-- doc-test: until: True -->
```sh
kubectl get llmd -w
```
";

    #[test]
    fn blocks_carry_their_directives_placeholders_and_output() {
        let blocks = blocks(PAGE).unwrap();
        assert_eq!(blocks.len(), 3);
        assert_eq!(blocks[0].line, 6);
        assert_eq!(
            blocks[0].code,
            "gcloud secrets list --project my-project   # in us-central1\necho $PROJECT_ID MY_PROJECT_ID"
        );
        assert_eq!(blocks[0].mode, Mode::Run { exit: 0 });
        assert_eq!(blocks[0].env["DATABASE_URL"], "postgres://db");
        assert_eq!(
            blocks[0].output.as_deref(),
            Some("NAME  CREATED\nx     2026-01-01")
        );
        assert_eq!(blocks[1].mode, Mode::Skip("needs real Google".into()));
        assert_eq!(blocks[1].code, "gcloud services enable run.googleapis.com");
        assert_eq!(blocks[2].mode, Mode::Until("True".into()));
        assert_eq!(blocks[2].output, None);
    }

    #[test]
    fn a_wrong_directive_is_an_error_with_its_line() {
        let unknown = blocks("<!-- doc-test: skipp: x -->\n```bash\nls\n```\n").unwrap_err();
        assert_eq!(unknown.line, 1);
        assert!(unknown.problem.contains("unknown directive"), "{unknown:?}");
        let no_reason = blocks("<!-- doc-test: skip -->\n```bash\nls\n```\n").unwrap_err();
        assert!(no_reason.problem.contains("reason"), "{no_reason:?}");
        let dangling = blocks("text\n<!-- doc-test: skip: x -->\n").unwrap_err();
        assert_eq!(dangling.line, 2);
        let on_yaml = blocks("<!-- doc-test: skip: x -->\n```yaml\na: 1\n```\n").unwrap_err();
        assert!(on_yaml.problem.contains("not a shell block"), "{on_yaml:?}");
        let orphan_output = blocks("<!-- doc-test: output -->\n```text\nx\n```\n").unwrap_err();
        assert!(
            orphan_output.problem.contains("no shell block"),
            "{orphan_output:?}"
        );
        let setup =
            blocks("<!-- doc-test: where NS=llm -->\n<!-- doc-test: setup: kubectl create ns NS -->\n")
                .unwrap();
        assert_eq!(setup[0].code, "kubectl create ns llm");
        assert_eq!(setup[0].line, 2);
        let two = blocks("<!-- doc-test: exit: 2 -->\n```bash\nplan\n```\n").unwrap();
        assert_eq!(two[0].mode, Mode::Run { exit: 2 });
        assert!(blocks("<!-- doc-test: exit: two -->\n```bash\nx\n```\n").is_err());
        let bad_pair = blocks("<!-- doc-test: where PROJECT_ID -->\n").unwrap_err();
        assert!(bad_pair.problem.contains("NAME=VALUE"), "{bad_pair:?}");
    }

    #[test]
    fn links_anchors_and_named_tests() {
        let page = "# Getting started\n\n## 2. On a real cluster\n\nSee [a](docs/a.md#the-operators-google-permissions), \
                    [site](https://x.y/z), [here](#getting-started).\n\n```bash\n[no](link.md)\n```\n\n\
                    Proved by [`flows.rs`](tests/tests/flows.rs): `a_change_is_put_back`, not `Ready` or `x`.\n\
                    - and `not_a_test_name` in the next item; a regex `[a-z](x)` is no link.\n";
        let found = links(page);
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0].path, "docs/a.md");
        assert_eq!(
            found[0].anchor.as_deref(),
            Some("the-operators-google-permissions")
        );
        assert_eq!(
            (found[1].path.as_str(), found[1].anchor.as_deref()),
            ("", Some("getting-started"))
        );
        assert_eq!(found[2].path, "tests/tests/flows.rs");
        let heads = anchors(page);
        assert!(
            heads.contains("getting-started") && heads.contains("2-on-a-real-cluster"),
            "{heads:?}"
        );
        assert_eq!(
            anchors("## The operator's Google permissions\n### `PermissionDenied`\n"),
            [
                "permissiondenied".to_owned(),
                "the-operators-google-permissions".to_owned()
            ]
            .into()
        );
        assert_eq!(
            named_tests(page),
            vec![(
                11,
                "tests/tests/flows.rs".to_owned(),
                "a_change_is_put_back".to_owned()
            )]
        );
    }

    #[test]
    fn placeholders_are_whole_words_only() {
        let w = BTreeMap::from([("P".to_owned(), "my-project".to_owned())]);
        assert_eq!(
            substitute("--project P -P P_X XP $P P:R", &w),
            "--project my-project -my-project P_X XP $P my-project:R"
        );
    }

    #[test]
    fn output_matches_by_words_with_volatile_words_free() {
        let documented = "\
NAME            READY   REASON   URL                                             AGE
litellm-proxy   True    Ready    https://litellm-proxy-959f96ce4b-uc.a.run.app   9s
...
DATABASE_URL	projects/my-project/secrets/database-url	1";
        let actual = "\
NAME            READY   REASON   URL                                          AGE
litellm-proxy   True    Ready    https://litellm-proxy-0123abcd-uc.a.run.app   12s
LITELLM_MASTER_KEY\tprojects/my-project/secrets/litellm-master-key\t1
DATABASE_URL\tprojects/my-project/secrets/database-url\t1";
        assert_eq!(matches(documented, actual), Ok(()));
        // A changed word, a missing column, and the wrong order are all caught.
        assert!(matches(documented, &actual.replace("Ready ", "Pending ")).is_err());
        assert!(matches(documented, &actual.replace("REASON", "")).is_err());
        // A version is a plain number: it must be the one shown.
        assert!(matches(documented, &actual.replace("database-url\t1", "database-url\t2")).is_err());
        let reordered = "DATABASE_URL projects/my-project/secrets/database-url 1\nNAME READY REASON URL AGE";
        assert_eq!(
            matches(
                "NAME READY REASON URL AGE\nDATABASE_URL projects/my-project/secrets/database-url 1",
                reordered
            ),
            Err("DATABASE_URL projects/my-project/secrets/database-url 1".to_owned())
        );
    }
}
