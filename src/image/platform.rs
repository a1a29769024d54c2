//! Target platforms (`linux/amd64`, `linux/arm/v7`), parsed and normalised
//! the way containerd's platform specifiers are, so that `--platform` and
//! `FROM --platform` accept what buildx accepts.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An OS/architecture/variant triple.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// Why a platform string was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlatformError {
    #[error("invalid platform {0:?}: expected os[/arch[/variant]]")]
    Shape(String),
    #[error("invalid platform {spec:?}: unknown operating system {os:?}")]
    UnknownOs { spec: String, os: String },
    #[error("invalid platform {spec:?}: unknown architecture {arch:?}")]
    UnknownArch { spec: String, arch: String },
}

const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "illumos",
    "ios",
    "js",
    "linux",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
];

const KNOWN_ARCH: &[&str] = &[
    "386", "amd64", "arm", "arm64", "loong64", "mips", "mips64", "mips64le", "mipsle", "ppc64",
    "ppc64le", "riscv64", "s390x", "wasm",
];

impl Platform {
    /// The platform this binary runs on (the default build and target
    /// platform).
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" => ("ppc64le", None),
            "riscv64" => ("riscv64", None),
            "s390x" => ("s390x", None),
            other => (other, None),
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: variant.map(str::to_string),
        }
    }
}

/// Normalises the architecture aliases containerd accepts and fills in the
/// variant ARM images default to.
fn normalize_arch(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let variant = variant.map(str::to_lowercase);
    match (arch, variant.as_deref()) {
        ("i386", _) => ("386".into(), None),
        ("x86_64" | "x86-64" | "amd64", Some("v1")) => ("amd64".into(), None),
        ("x86_64" | "x86-64", v) => ("amd64".into(), v.map(str::to_string)),
        ("aarch64" | "arm64", Some("8" | "v8")) => ("arm64".into(), None),
        ("aarch64", v) => ("arm64".into(), v.map(str::to_string)),
        ("armhf", _) => ("arm".into(), Some("v7".into())),
        ("armel", _) => ("arm".into(), Some("v6".into())),
        ("arm", None | Some("7")) => ("arm".into(), Some("v7".into())),
        ("arm", Some("5" | "6" | "8")) => ("arm".into(), variant.map(|v| format!("v{v}"))),
        (a, v) => (a.to_string(), v.map(str::to_string)),
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let lower = spec.trim().to_lowercase();
        let parts: Vec<&str> = lower.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) || parts.len() > 3 {
            return Err(PlatformError::Shape(spec.to_string()));
        }
        // A lone word is an OS (architecture of the host) or, like
        // containerd, an architecture on Linux.
        let (os, arch, variant) = match parts.as_slice() {
            [word] if KNOWN_OS.contains(word) => {
                let host = Platform::host();
                return Ok(Platform {
                    os: (*word).to_string(),
                    ..host
                });
            }
            [word] => ("linux", *word, None),
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] => (*os, *arch, Some(*variant)),
            _ => return Err(PlatformError::Shape(spec.to_string())),
        };
        if !KNOWN_OS.contains(&os) {
            return Err(PlatformError::UnknownOs {
                spec: spec.to_string(),
                os: os.to_string(),
            });
        }
        let (architecture, variant) = normalize_arch(arch, variant);
        if !KNOWN_ARCH.contains(&architecture.as_str()) {
            return Err(PlatformError::UnknownArch {
                spec: spec.to_string(),
                arch: arch.to_string(),
            });
        }
        Ok(Platform {
            os: os.to_string(),
            architecture,
            variant,
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        s.parse::<Platform>()
            .map(|p| p.to_string())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn parses_and_normalises() {
        assert_eq!(p("linux/amd64"), "linux/amd64");
        assert_eq!(p("Linux/x86_64"), "linux/amd64");
        assert_eq!(p("linux/aarch64"), "linux/arm64");
        assert_eq!(p("linux/arm64/v8"), "linux/arm64");
        assert_eq!(p("linux/arm"), "linux/arm/v7");
        assert_eq!(p("linux/armhf"), "linux/arm/v7");
        assert_eq!(p("linux/arm/6"), "linux/arm/v6");
        assert_eq!(p("arm64"), "linux/arm64");
        assert_eq!(p("linux/riscv64"), "linux/riscv64");
    }

    #[test]
    fn rejects_nonsense() {
        assert!(p("linux/").contains("expected os"));
        assert!(p("a/b/c/d").contains("expected os"));
        assert!(p("plan10/amd64").contains("unknown operating system"));
        assert!(p("linux/z80").contains("unknown architecture"));
    }
}
