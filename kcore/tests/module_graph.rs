//! KCore's modules depend on each other without a cycle: each layer can be
//! read, tested and checked on its own (ownership before the transitions,
//! the transitions before the vCPU run path that uses them). Reads the
//! sources: every `crate::m` path in code (not in comments, strings or the
//! `#[cfg(test)]` module at a file's end) is an edge from the file's
//! top-level module to `m`.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// `code` without comments, string and char literals' contents, and the
/// trailing `#[cfg(test)]` module.
fn code_only(src: &str) -> String {
    let src = match src.find("#[cfg(test)]\nmod tests") {
        Some(i) => &src[..i],
        None => src,
    };
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1).copied()) {
            (b'/', Some(b'/')) => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            (b'/', Some(b'*')) => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            (b'"', _) => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            (c, _) => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    out
}

/// The top-level modules `code` names through `crate::`.
fn uses(code: &str) -> BTreeSet<String> {
    let mut deps = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let mut names = Vec::new();
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::c}`
            let end = group.find('}').unwrap_or(group.len());
            names.extend(group[..end].split(',').map(str::trim));
        } else {
            names.push(rest);
        }
        for n in names {
            let m: String = n
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !m.is_empty() {
                deps.insert(m);
            }
        }
    }
    deps
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = vec![src.clone()];
    while let Some(p) = files.pop() {
        for e in fs::read_dir(&p).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                files.push(path);
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap();
            let top = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            if top == "lib" {
                continue;
            }
            let code = code_only(&fs::read_to_string(&path).unwrap());
            let deps = g.entry(top.clone()).or_default();
            deps.extend(uses(&code).into_iter().filter(|d| *d != top));
        }
    }
    g
}

/// A cycle through `g`, if there is one.
fn cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        n: &str,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(g, d, done, path) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|n| visit(g, n, &mut done, &mut Vec::new()))
}

#[test]
fn kcore_modules_form_no_cycle() {
    let g = graph();
    for (m, deps) in &g {
        println!("{m:12} -> {deps:?}");
    }
    assert!(g.contains_key("mem_protect") && g.contains_key("vcpu"));
    assert!(
        g["vcpu_mem"].contains("mem_protect"),
        "the reader sees edges"
    );
    assert_eq!(cycle(&g), None, "a cycle between KCore's modules");
}

#[test]
fn the_checker_finds_a_cycle() {
    let mut g = graph();
    g.get_mut("mem_protect")
        .unwrap()
        .insert("vcpu_mem".to_string());
    assert!(cycle(&g).is_some());
    assert_eq!(
        uses(&code_only(
            "use crate::{a, b::c}; // crate::x\nlet s = \"crate::y\"; crate::d::e();"
        )),
        ["a", "b", "d"].map(String::from).into()
    );
}
