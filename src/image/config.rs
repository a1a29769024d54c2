//! The image configuration a build produces: the OCI image config with
//! Docker's extensions (Healthcheck, OnBuild, Shell), serialised with the
//! field names both formats use, so that it can be written into a
//! manifest unchanged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::platform::Platform;

/// `PATH` for Linux images whose base sets none, as BuildKit adds it.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An image's configuration blob.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: Config,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
}

/// The runtime defaults an image carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Config {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exposed_ports: BTreeMap<String, Empty>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// `None` (inherit/unset) differs from `Some([])` (`ENTRYPOINT []`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, Empty>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stop_signal: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub args_escaped: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_build: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shell: Vec<String>,
}

/// The `{}` value of ExposedPorts and Volumes maps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// HEALTHCHECK settings; durations in nanoseconds as Docker stores them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `["NONE"]`, `["CMD", args…]` or `["CMD-SHELL", command]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// The layers of the image, by uncompressed digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl RootFs {
    /// The chain ID of each layer prefix (`chain[i]` covers layers
    /// `0..=i`), from the diff_ids, as the OCI spec defines it: what
    /// names "these layers, stacked" whatever their compression.
    pub fn chain_ids(&self) -> Vec<String> {
        use sha2::{Digest as _, Sha256};
        let mut chain: Vec<String> = Vec::new();
        for diff_id in &self.diff_ids {
            let next = match chain.last() {
                None => diff_id.clone(),
                Some(prev) => format!(
                    "sha256:{}",
                    hex::encode(Sha256::digest(format!("{prev} {diff_id}")))
                ),
            };
            chain.push(next);
        }
        chain
    }
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".into(),
            diff_ids: Vec::new(),
        }
    }
}

/// One step of the image's history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

impl Image {
    /// The config of `FROM scratch` for `platform`: working directory `/`
    /// and, on Linux, the default PATH.
    pub fn empty(platform: &Platform) -> Image {
        let env = if platform.os == "windows" {
            Vec::new()
        } else {
            vec![format!("PATH={DEFAULT_PATH}")]
        };
        Image {
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            variant: platform.variant.clone(),
            config: Config {
                working_dir: "/".into(),
                env,
                ..Config::default()
            },
            ..Image::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_spec() {
        let rootfs = RootFs {
            kind: "layers".into(),
            diff_ids: vec!["sha256:a".into(), "sha256:b".into()],
        };
        let chain = rootfs.chain_ids();
        assert_eq!(chain[0], "sha256:a");
        let expected = {
            use sha2::{Digest as _, Sha256};
            format!(
                "sha256:{}",
                hex::encode(Sha256::digest("sha256:a sha256:b"))
            )
        };
        assert_eq!(chain[1], expected);
    }

    #[test]
    fn serialises_with_oci_and_docker_field_names() {
        let mut img = Image::empty(&"linux/arm64".parse().unwrap());
        img.config.cmd = Some(vec!["/hello".into()]);
        img.config.entrypoint = Some(vec![]);
        img.config.exposed_ports.insert("80/tcp".into(), Empty {});
        img.config.healthcheck = Some(HealthConfig {
            test: vec!["NONE".into()],
            ..HealthConfig::default()
        });
        let json = serde_json::to_value(&img).unwrap();
        assert_eq!(json["architecture"], "arm64");
        assert_eq!(json["rootfs"]["type"], "layers");
        assert_eq!(json["config"]["WorkingDir"], "/");
        assert_eq!(json["config"]["Env"][0], format!("PATH={DEFAULT_PATH}"));
        assert_eq!(json["config"]["Entrypoint"], serde_json::json!([]));
        assert_eq!(
            json["config"]["ExposedPorts"]["80/tcp"],
            serde_json::json!({})
        );
        assert_eq!(json["config"]["Healthcheck"]["Test"][0], "NONE");
        assert!(json["config"].get("User").is_none());
        let back: Image = serde_json::from_value(json).unwrap();
        assert_eq!(back, img);
    }
}
