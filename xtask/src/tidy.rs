//! Tidy checks: conventions that keep the codebase navigable.

use std::path::Path;

use anyhow::{bail, Result};

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if p.is_dir() {
            if name != "target" && !name.starts_with('.') && name != "node_modules" {
                rust_files(&p, out);
            }
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

/// Every Rust file starts with a `//!` line saying what it is for.
pub fn run(root: &Path) -> Result<()> {
    let mut files = Vec::new();
    for d in ["crates", "xtask", "bench"] {
        rust_files(&root.join(d), &mut files);
    }
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f)?;
        if !text.trim_start().starts_with("//!") {
            bad.push(f.strip_prefix(root).unwrap_or(f).display().to_string());
        }
    }
    if !bad.is_empty() {
        bail!(
            "these files do not start with a //! line saying what they are for:\n  {}",
            bad.join("\n  ")
        );
    }
    eprintln!("    tidy: {} Rust files checked", files.len());
    Ok(())
}
