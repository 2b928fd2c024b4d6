//! Embeds `flows/*.yaml` into the binary, so `fixbot` runs with its shipped
//! content even where no `flows/` directory sits beside it, and links the
//! binary with packed relocations on glibc.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    pack_relocations();
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let dir = root.join("flows");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| entries.filter_map(|entry| entry.ok().map(|entry| entry.path())).collect())
        .unwrap_or_default();
    // Translations: flows/i18n/<lang>/*.yaml, embedded as `i18n/<lang>/<file>`.
    let i18n = dir.join("i18n");
    println!("cargo:rerun-if-changed={}", i18n.display());
    for lang in std::fs::read_dir(&i18n).into_iter().flatten().filter_map(|entry| entry.ok().map(|entry| entry.path()))
    {
        println!("cargo:rerun-if-changed={}", lang.display());
        files.extend(
            std::fs::read_dir(&lang).into_iter().flatten().filter_map(|entry| entry.ok().map(|entry| entry.path())),
        );
    }
    files.retain(|path| path.extension().is_some_and(|ext| ext == "yaml"));
    files.sort();
    let mut code = String::from(
        "/// `(file name, contents)` of every shipped flow file.\npub const EMBEDDED_FLOWS: &[(&str, &str)] = &[\n",
    );
    for path in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path.strip_prefix(&dir).ok().and_then(|name| name.to_str()).expect("flow file names are UTF-8");
        writeln!(code, "    ({name:?}, include_str!({:?})),", path.display().to_string()).expect("writing to a String");
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("embedded_flows.rs");
    std::fs::write(out, code).expect("OUT_DIR is writable");
}

/// The dynamic loader reads every relocation at start-up: 48,000 of them,
/// 1.1 MB of the binary resident for nothing. Packed (`DT_RELR`), they take
/// 15 KB. A binary so linked needs glibc 2.36 or newer to start, and the
/// linker that comes with it (binutils 2.38 or newer, on x86), so it is done
/// only when building for this machine's own glibc of at least 2.36 (Debian 12
/// and later). Only the `fixbot` binary is linked so; nothing is rebuilt.
fn pack_relocations() {
    let (host, target) = (std::env::var("HOST").unwrap_or_default(), std::env::var("TARGET").unwrap_or_default());
    let x86_gnu = target.ends_with("-linux-gnu") && (target.starts_with("x86_64") || target.starts_with("i686"));
    if host != target || !x86_gnu {
        return;
    }
    // "glibc 2.36"
    let version = std::process::Command::new("getconf").arg("GNU_LIBC_VERSION").output().ok();
    let version = version.as_ref().and_then(|output| std::str::from_utf8(&output.stdout).ok()).unwrap_or_default();
    let mut numbers = version.trim().trim_start_matches("glibc ").split('.').map(|part| part.parse::<u32>().ok());
    if let (Some(Some(major)), Some(Some(minor))) = (numbers.next(), numbers.next())
        && (major, minor) >= (2, 36)
    {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
