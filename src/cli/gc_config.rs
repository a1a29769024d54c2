//! The automatic GC policy: `[gc]` in `$XDG_CONFIG_HOME/bk/config.toml`,
//! overridden by `BK_GC_ENABLED`, `BK_GC_KEEP_STORAGE` and
//! `BK_GC_KEEP_DURATION`. Without either, GC keeps the snapshots under
//! 10% of the store's file system or 20 GB, whichever is smaller.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::cache::units::{parse_duration, parse_size};

/// The default upper bound of the store's snapshots.
const DEFAULT_KEEP_MAX: u64 = 20_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcPolicy {
    pub enabled: bool,
    pub keep_storage: u64,
    pub keep_duration: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    gc: GcSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct GcSection {
    enabled: Option<bool>,
    keep_storage: Option<String>,
    keep_duration: Option<String>,
}

/// `$XDG_CONFIG_HOME/bk/config.toml` (`~/.config/bk/config.toml`).
fn config_path() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|d| d.config_dir().join("bk").join("config.toml"))
}

/// The policy for the store at `root`.
pub fn load(root: &Path) -> anyhow::Result<GcPolicy> {
    let file = match config_path() {
        Some(path) => match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str::<ConfigFile>(&text)
                .with_context(|| format!("invalid configuration file {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ConfigFile::default(),
            Err(e) => return Err(e).with_context(|| format!("failed to read {}", path.display())),
        },
        None => ConfigFile::default(),
    };
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let enabled = match env("BK_GC_ENABLED") {
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => bail!("BK_GC_ENABLED={v}: expected true or false"),
        },
        None => file.gc.enabled.unwrap_or(true),
    };
    let keep_storage = match env("BK_GC_KEEP_STORAGE").or(file.gc.keep_storage) {
        Some(v) => parse_size(&v).context("bad GC keep-storage")?,
        None => default_keep_storage(root),
    };
    let keep_duration = env("BK_GC_KEEP_DURATION")
        .or(file.gc.keep_duration)
        .map(|v| parse_duration(&v))
        .transpose()
        .context("bad GC keep-duration")?;
    Ok(GcPolicy {
        enabled,
        keep_storage,
        keep_duration,
    })
}

/// min(10% of the file system holding `root`, 20 GB).
fn default_keep_storage(root: &Path) -> u64 {
    match nix::sys::statvfs::statvfs(root) {
        Ok(st) => {
            let total = st.blocks() * st.fragment_size();
            (total / 10).min(DEFAULT_KEEP_MAX)
        }
        Err(_) => DEFAULT_KEEP_MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gc_section_parses_and_rejects_typos() {
        let f: ConfigFile = toml::from_str(
            "[gc]\nkeep-storage = \"5GB\"\nkeep-duration = \"48h\"\nenabled = true\n",
        )
        .unwrap();
        assert_eq!(f.gc.keep_storage.as_deref(), Some("5GB"));
        assert_eq!(f.gc.enabled, Some(true));
        assert!(toml::from_str::<ConfigFile>("[gc]\nkeep-storge = \"5GB\"\n").is_err());
    }

    #[test]
    fn the_default_is_at_most_20_gb() {
        let dir = tempfile::tempdir().unwrap();
        let keep = default_keep_storage(dir.path());
        assert!(keep > 0 && keep <= DEFAULT_KEEP_MAX);
    }
}
