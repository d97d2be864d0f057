//! Copies that cannot drift.
//!
//! A reader copies one program of `examples/` alone into a fresh crate, so
//! some code stands in several programs on purpose (a tower layer, the stop
//! on Ctrl-C or SIGTERM, the methods a server does not offer). This test
//! keeps every copy the same as the others:
//!
//! 1. A section whose anchor name starts with `copy_` is a copy:
//!    `// ANCHOR: copy_NAME` ... `// ANCHOR_END: copy_NAME`. All sections of
//!    one such name, in whichever programs, have the same text line for
//!    line, and the name stands in two programs at least. Anchor lines inside
//!    a copy do not count (mdBook drops them), nor the indentation that all
//!    of its lines share (a copy may stand deeper in one program).
//! 2. A stub, a method whose whole body is `Err(Status::unimplemented(..))`,
//!    is a copy of every other stub of that method: a server answers a call
//!    it does not offer in the same words as every other server.
//! 3. Repeated code must be marked: lines that stand in two programs, the
//!    same but for indentation, must lie in copies of one name (or stubs of
//!    one method) on both sides, when they are [`MIN_RUN`] lines or more, or
//!    the whole of a copy (a copy found again unmarked). Blank lines, lone
//!    brackets, `use` declarations and anchor lines are not counted.
//!
//! Every other anchor name may stand in several programs with other code
//! (`uses`, `main`, `serve`, `do_get`, ...: each program's own step); such
//! sections are never compared. Adding a recipe needs no change here: code
//! it repeats from another program goes in a `copy_` section of the same
//! name in both, and rule 3 points at any that it forgets.

use crate::common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;
use std::fs;
use std::ops::Range;

/// The fewest shared lines, outside copies, that rule 3 reports. Shorter
/// runs are mostly what a trait makes every implementation write alike: the
/// signature of `http_body::Body::poll_frame` and its first line are seven.
const MIN_RUN: usize = 8;

/// The prefix of the anchor names of copies.
const COPY: &str = "copy_";

#[test]
fn the_copies_in_the_programs_are_the_same() {
    let dir = common::repo_root().join("examples");
    let mut programs = Vec::new();
    for entry in fs::read_dir(&dir).expect("examples/ can be read") {
        let path = entry.expect("an entry of examples/").path();
        // A program of several files is a folder: each of its modules.
        let files: Vec<_> = match fs::read_dir(&path) {
            Ok(modules) => modules.flatten().map(|e| e.path()).collect(),
            Err(_) => vec![path],
        };
        for path in files {
            if path.extension().is_some_and(|e| e == "rs") {
                let name = path.strip_prefix(&dir).unwrap_or(&path).display();
                let text =
                    fs::read_to_string(&path).expect("a program can be read");
                programs.push((format!("examples/{name}"), text));
            }
        }
    }
    programs.sort();
    assert!(programs.len() > 1, "no programs in {}", dir.display());
    let problems = check(&programs);
    assert!(
        problems.is_empty(),
        "{} problem(s) with copies (the rules are in tests/recipes/copies.rs):\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}

/// Lines with their numbers.
type Lines<'a> = Vec<(usize, &'a str)>;

/// A copy section or a stub.
struct Section<'a> {
    /// The anchor name, or `stub NAME` for a stub of the method NAME.
    group: String,
    file: &'a str,
    /// The number of its first line.
    start: usize,
    lines: Lines<'a>,
}

/// A copy section or stub that a line lies in: its group and first line.
type Owner = Option<(String, usize)>;

/// A line as rule 3 compares it.
struct Counted<'a> {
    number: usize,
    /// Without its indentation.
    text: &'a str,
    /// The innermost copy section it lies in, else the stub.
    owner: Owner,
}

/// One program's copies and stubs, and its lines as rule 3 compares them.
struct Parsed<'a> {
    file: &'a str,
    sections: Vec<Section<'a>>,
    counted: Vec<Counted<'a>>,
    /// How many counted lines each copy section and stub has.
    sizes: HashMap<(String, usize), usize>,
}

/// Checks `programs`, (file name, text) pairs, against the three rules, and
/// describes every problem.
fn check(programs: &[(String, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    let parsed: Vec<Parsed> = programs
        .iter()
        .map(|(file, text)| parse(file, text, &mut problems))
        .collect();

    let mut groups: BTreeMap<&str, Vec<&Section>> = BTreeMap::new();
    for section in parsed.iter().flat_map(|program| &program.sections) {
        groups.entry(&section.group).or_default().push(section);
    }
    for (group, copies) in &groups {
        let first = copies[0];
        if group.starts_with(COPY)
            && copies.iter().all(|copy| copy.file == first.file)
        {
            problems.push(format!(
                "{}:{}: `{group}` stands in no other program: a copy needs its other \
                 copies (or drop the `{COPY}` prefix)",
                first.file, first.start
            ));
        }
        // Each copy is compared with the text that most copies have.
        let agreeing =
            |a: &Section| copies.iter().filter(|b| same_text(a, b)).count();
        let most = copies.iter().rev().max_by_key(|copy| agreeing(copy));
        let most = most.copied().unwrap_or(first);
        for copy in copies {
            if !same_text(most, copy) {
                problems.push(format!(
                    "{}:{} and {}:{}: the copies of `{group}` differ (make them the same):\n{}",
                    most.file,
                    most.start,
                    copy.file,
                    copy.start,
                    diff(most, copy)
                ));
            }
        }
    }

    // The same lines repeated in several programs make one problem.
    let mut repeated: BTreeMap<Vec<&str>, BTreeSet<Place>> = BTreeMap::new();
    for (i, a) in parsed.iter().enumerate() {
        for b in &parsed[i + 1..] {
            for (a_run, b_run) in unmarked_runs(a, b) {
                let text = a.counted[a_run.clone()].iter().map(|line| line.text);
                let places = repeated.entry(text.collect()).or_default();
                places.insert(place(a, a_run));
                places.insert(place(b, b_run));
            }
        }
    }
    for (text, places) in repeated {
        let mut marked = Vec::new();
        let places: Vec<String> = places
            .into_iter()
            .map(|(file, first, last, owner)| {
                if let Some((group, _)) = owner {
                    marked.push(format!("`{group}` in {file}"));
                }
                format!("{file}:{first}-{last}")
            })
            .collect();
        let mut problem = format!(
            "{}: the same {} lines, not marked as one copy: put them between \
             `// ANCHOR: {COPY}NAME` and `// ANCHOR_END: {COPY}NAME` in each (one NAME), \
             or make them differ",
            places.join(", "),
            text.len()
        );
        if !marked.is_empty() {
            let _ = write!(problem, "; they start in {}", marked.join(", "));
        }
        let (first, last) = (text[0], text[text.len() - 1]);
        let _ = write!(problem, ":\n  {first}\n  ...\n  {last}");
        problems.push(problem);
    }
    problems
}

fn parse<'a>(
    file: &'a str,
    text: &'a str,
    problems: &mut Vec<String>,
) -> Parsed<'a> {
    let lines: Vec<&str> = text.lines().collect();
    let mut sections = Vec::new();
    let mut owner: Vec<Owner> = vec![None; lines.len()];

    let mut open: Vec<(&str, usize, Lines)> = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let number = index + 1;
        let start = anchor(line, "ANCHOR:").filter(|name| name.starts_with(COPY));
        let end = anchor(line, "ANCHOR_END:").filter(|name| name.starts_with(COPY));
        if let Some(name) = start {
            if open.iter().any(|(open_name, ..)| *open_name == name) {
                problems.push(format!(
                    "{file}:{number}: `{name}` starts again before its end"
                ));
            }
            open.push((name, number + 1, Vec::new()));
        } else if let Some(name) = end {
            match open.iter().rposition(|(open_name, ..)| *open_name == name) {
                Some(at) => {
                    let (name, start, lines) = open.remove(at);
                    sections.push(Section {
                        group: name.to_string(),
                        file,
                        start,
                        lines: dedent(lines),
                    });
                }
                None => problems.push(format!(
                    "{file}:{number}: `{name}` ends but never starts"
                )),
            }
        } else if !is_anchor(line) {
            for (.., section) in &mut open {
                section.push((number, *line));
            }
            owner[index] = open
                .last()
                .map(|(name, start, _)| (name.to_string(), *start));
        }
    }
    for (name, start, _) in open {
        problems.push(format!("{file}:{}: `{name}` never ends", start - 1));
    }

    for (name, first, last) in stubs(&lines) {
        let group = format!("stub {name}");
        for slot in &mut owner[first..=last] {
            slot.get_or_insert_with(|| (group.clone(), first + 1));
        }
        sections.push(Section {
            group,
            file,
            start: first + 1,
            lines: dedent((first..=last).map(|i| (i + 1, lines[i])).collect()),
        });
    }

    let mut counted = Vec::new();
    let mut sizes = HashMap::new();
    let mut in_use = false;
    for (index, line) in lines.iter().enumerate() {
        let text = line.trim();
        if in_use || text.starts_with("use ") || text.starts_with("pub use ") {
            in_use = !text.ends_with(';');
            continue;
        }
        let punctuation = text.chars().all(|c| "{}()[];,.?".contains(c));
        if punctuation || is_anchor(line) {
            continue;
        }
        if let Some(owner) = &owner[index] {
            *sizes.entry(owner.clone()).or_insert(0) += 1;
        }
        counted.push(Counted {
            number: index + 1,
            text,
            owner: owner[index].clone(),
        });
    }
    Parsed {
        file,
        sections,
        counted,
        sizes,
    }
}

/// The name an `ANCHOR:` or `ANCHOR_END:` mark gives, as mdBook reads it.
fn anchor<'a>(line: &'a str, mark: &str) -> Option<&'a str> {
    let rest = line[line.find(mark)? + mark.len()..].trim_start();
    let end = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

fn is_anchor(line: &str) -> bool {
    anchor(line, "ANCHOR:").is_some() || anchor(line, "ANCHOR_END:").is_some()
}

/// The methods whose whole body is `Err(Status::unimplemented(..))`: their
/// name, first and last line (indexes).
fn stubs<'a>(lines: &[&'a str]) -> Vec<(&'a str, usize, usize)> {
    let mut stubs = Vec::new();
    for (first, line) in lines.iter().enumerate() {
        let text = line.trim_start();
        let Some(rest) = text.strip_prefix("async fn ") else {
            continue;
        };
        let name = rest.split(['(', '<']).next().unwrap_or_default();
        let closing = format!("{}}}", &line[..line.len() - text.len()]);
        let Some(last) = (first..lines.len()).find(|&i| lines[i] == closing) else {
            continue;
        };
        let Some(open) = (first..last).find(|&i| lines[i].ends_with('{')) else {
            continue;
        };
        if let [only] = &lines[open + 1..last]
            && only.trim().starts_with("Err(Status::unimplemented(")
        {
            stubs.push((name, first, last));
        }
    }
    stubs
}

/// The lines without the indentation that they all share.
fn dedent<'a>(lines: Lines<'a>) -> Lines<'a> {
    fn indent(line: &str) -> usize {
        line.len() - line.trim_start().len()
    }
    let shared = lines
        .iter()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(_, line)| indent(line))
        .min()
        .unwrap_or(0);
    let cut =
        |line: &'a str| line.get(shared.min(indent(line))..).unwrap_or_default();
    lines.into_iter().map(|(n, line)| (n, cut(line))).collect()
}

fn same_text(a: &Section, b: &Section) -> bool {
    let (a, b) = (&a.lines, &b.lines);
    a.len() == b.len() && a.iter().zip(b).all(|((_, x), (_, y))| x == y)
}

/// The lines in which copy `b` differs from copy `a`, found by a longest
/// common subsequence; at most 12 of them.
fn diff(a: &Section, b: &Section) -> String {
    let (a_file, b_file) = (a.file, b.file);
    let (a, b) = (&a.lines, &b.lines);
    let (n, m) = (a.len(), b.len());
    let mut common = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            common[i][j] = if a[i].1 == b[j].1 {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let mut changes = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i].1 == b[j].1 {
            (i, j) = (i + 1, j + 1);
        } else if j == m || (i < n && common[i + 1][j] >= common[i][j + 1]) {
            changes.push(format!("  - {a_file}:{}: {}", a[i].0, a[i].1));
            i += 1;
        } else {
            changes.push(format!("  + {b_file}:{}: {}", b[j].0, b[j].1));
            j += 1;
        }
    }
    let more = changes.len().saturating_sub(12);
    changes.truncate(12);
    if more > 0 {
        changes.push(format!("  ... and {more} more changed lines"));
    }
    changes.join("\n")
}

/// The runs of counted lines that `a` and `b` share without lying in copies
/// of one name on both sides, which rule 3 reports: pairs of index ranges
/// into their counted lines.
fn unmarked_runs(a: &Parsed, b: &Parsed) -> Vec<(Range<usize>, Range<usize>)> {
    let mut at: HashMap<&str, Vec<usize>> = HashMap::new();
    for (j, line) in b.counted.iter().enumerate() {
        at.entry(line.text).or_default().push(j);
    }
    let reported = |a_run: &Range<usize>, b_run: &Range<usize>| {
        a_run.len() >= MIN_RUN
            || holds_a_whole_copy(a, a_run)
            || holds_a_whole_copy(b, b_run)
    };
    let mut runs = Vec::new();
    // The runs that end at the previous line of `a`: end in `b` -> length.
    let mut ending: HashMap<usize, usize> = HashMap::new();
    for i in 0..=a.counted.len() {
        let mut next = HashMap::new();
        if let Some(line) = a.counted.get(i) {
            for &j in at.get(line.text).into_iter().flatten() {
                let same_copy = match (&line.owner, &b.counted[j].owner) {
                    (Some((x, _)), Some((y, _))) => x == y,
                    _ => false,
                };
                if !same_copy {
                    let before = j.checked_sub(1).and_then(|k| ending.get(&k));
                    next.insert(j, before.unwrap_or(&0) + 1);
                }
            }
        }
        for (&j, &length) in &ending {
            let (a_run, b_run) = (i - length..i, j + 1 - length..j + 1);
            if !next.contains_key(&(j + 1)) && reported(&a_run, &b_run) {
                runs.push((a_run, b_run));
            }
        }
        ending = next;
    }
    runs.sort_by_key(|(a_run, _)| a_run.start);
    runs
}

/// Whether `run` holds every counted line of a copy section or stub.
fn holds_a_whole_copy(program: &Parsed, run: &Range<usize>) -> bool {
    let mut held: HashMap<&(String, usize), usize> = HashMap::new();
    for owner in program.counted[run.clone()].iter().flat_map(|l| &l.owner) {
        *held.entry(owner).or_insert(0) += 1;
    }
    held.iter()
        .any(|(owner, n)| program.sizes.get(*owner) == Some(n))
}

/// A run of lines in a program: its file, first and last line, and the
/// copy section or stub that its first line lies in.
type Place<'a> = (&'a str, usize, usize, Owner);

fn place<'a>(program: &Parsed<'a>, run: Range<usize>) -> Place<'a> {
    let first = &program.counted[run.start];
    let last = &program.counted[run.end - 1];
    (program.file, first.number, last.number, first.owner.clone())
}

// The checker on programs of a few lines, to show that it fails when it
// should.

fn program(name: &str, text: &str) -> (String, String) {
    (name.to_string(), text.to_string())
}

const LAYER: &str = "\
// ANCHOR: copy_layer
struct Layer;
fn of() -> &'static str {
    \"no layer\"
}
// ANCHOR_END: copy_layer
";

#[test]
fn equal_copies_pass_and_other_anchors_may_differ() {
    let a =
        format!("// ANCHOR: main\nfn main() {{}}\n// ANCHOR_END: main\n{LAYER}");
    let b = format!(
        "{LAYER}// ANCHOR: main\nfn main() {{ run(); }}\n// ANCHOR_END: main\n"
    );
    let indented = format!("mod m {{\n{}}}\n", LAYER.replace('\n', "\n    "));
    let problems = check(&[
        program("a.rs", &a),
        program("b.rs", &b),
        program("c.rs", &indented),
    ]);
    assert_eq!(problems, Vec::<String>::new());
}

#[test]
fn a_changed_copy_fails_naming_both_places() {
    let changed = LAYER.replace("no layer", "no Layer");
    let b = format!("fn main() {{}}\n{changed}");
    let problems = check(&[
        program("a.rs", LAYER),
        program("b.rs", &b),
        program("c.rs", LAYER),
    ]);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let problem = &problems[0];
    assert!(
        problem.starts_with("a.rs:2 and b.rs:3: the copies of `copy_layer` differ"),
        "{problem}"
    );
    assert!(problem.contains("- a.rs:4:     \"no layer\""), "{problem}");
    assert!(problem.contains("+ b.rs:5:     \"no Layer\""), "{problem}");
}

#[test]
fn a_lone_or_unclosed_copy_fails() {
    let lone = check(&[program("a.rs", LAYER), program("b.rs", "fn main() {}\n")]);
    assert_eq!(lone.len(), 1, "{lone:#?}");
    assert!(lone[0].contains("stands in no other program"), "{lone:#?}");

    let unclosed = LAYER.replace("// ANCHOR_END: copy_layer\n", "");
    let problems = check(&[program("a.rs", LAYER), program("b.rs", &unclosed)]);
    let never_ends = "b.rs:1: `copy_layer` never ends";
    assert!(problems.iter().any(|p| p == never_ends), "{problems:#?}");
}

#[test]
fn a_changed_stub_fails() {
    let stub = "impl S {\n    async fn do_get(\n        &self,\n    ) -> Result<(), Status> {\n        \
                Err(Status::unimplemented(\"do_get is not offered\"))\n    }\n}\n";
    let other = stub.replace("is not offered", "is not supported");
    let same = check(&[program("a.rs", stub), program("b.rs", stub)]);
    assert_eq!(same, Vec::<String>::new());
    let problems = check(&[program("a.rs", stub), program("b.rs", &other)]);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let expected = "a.rs:2 and b.rs:2: the copies of `stub do_get` differ";
    assert!(problems[0].starts_with(expected), "{problems:#?}");
}

#[test]
fn repeated_code_outside_copies_fails() {
    let body: String = (1..=MIN_RUN).map(|i| format!("    step({i});\n")).collect();
    let a = format!("fn a() {{\n{body}}}\n");
    let b = format!("// other\nfn b() {{\n{body}}}\n");
    let problems = check(&[program("a.rs", &a), program("b.rs", &b)]);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let (a_end, b_end) = (MIN_RUN + 1, MIN_RUN + 2);
    let expected =
        format!("a.rs:2-{a_end}, b.rs:3-{b_end}: the same {MIN_RUN} lines");
    assert!(problems[0].starts_with(&expected), "{problems:#?}");

    // One line fewer is not reported.
    let shorter = b.replace("    step(1);\n", "");
    let problems = check(&[program("a.rs", &a), program("b.rs", &shorter)]);
    assert_eq!(problems, Vec::<String>::new());
}

#[test]
fn a_copy_found_again_unmarked_fails_whatever_its_size() {
    // Two marked copies of three lines, and a third copy left unmarked.
    let unmarked = "fn main() {}\nstruct Layer;\nfn of() -> &'static str {\n    \"no layer\"\n}\n";
    let problems = check(&[
        program("a.rs", LAYER),
        program("b.rs", LAYER),
        program("c.rs", unmarked),
    ]);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let expected =
        "a.rs:2-4, b.rs:2-4, c.rs:2-4: the same 3 lines, not marked as one copy";
    assert!(problems[0].starts_with(expected), "{problems:#?}");
    assert!(
        problems[0]
            .contains("they start in `copy_layer` in a.rs, `copy_layer` in b.rs"),
        "{problems:#?}"
    );

    // A part of a copy elsewhere is not one.
    let part = "struct Layer;\nfn other() {}\n";
    let problems = check(&[
        program("a.rs", LAYER),
        program("b.rs", LAYER),
        program("c.rs", part),
    ]);
    assert_eq!(problems, Vec::<String>::new());
}
