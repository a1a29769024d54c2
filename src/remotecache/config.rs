//! The cache config JSON, shaped as BuildKit's `cacheconfig.v0`
//! (`cache/remotecache/v1/types`): field names and meanings match, so
//! either tool can parse the other's file.

use serde::{Deserialize, Serialize};

/// Layers and the records that point into them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<CacheLayer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<CacheRecord>,
}

/// One layer blob and the layer below it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheLayer {
    pub blob: String,
    /// Index of the parent layer in [`CacheConfig::layers`]; -1 for a
    /// bottom layer. BuildKit omits 0, hence the default.
    #[serde(rename = "parent", default)]
    pub parent_index: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<LayerAnnotations>,
}

/// What a reader needs to know about a blob without fetching it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LayerAnnotations {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    #[serde(rename = "diffID", default, skip_serializing_if = "String::is_empty")]
    pub diff_id: String,
    #[serde(default)]
    pub size: i64,
    #[serde(default = "epoch")]
    pub created_at: String,
}

/// A cache key and its result(s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRecord {
    #[serde(rename = "layers", default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<CacheResult>,
    pub digest: String,
    /// BuildKit's links to parent records; bk writes none (its keys
    /// already cover the inputs) and ignores them when reading.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<serde_json::Value>,
}

/// A result: the top layer of its chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheResult {
    #[serde(rename = "layer")]
    pub layer_index: i64,
    #[serde(default = "epoch")]
    pub created_at: String,
}

/// The zero time as Go writes it; bk's caches are reproducible, so it
/// writes this rather than the time of the build.
pub fn epoch() -> String {
    "1970-01-01T00:00:00Z".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_buildkit_json() {
        let text = r#"{"layers":[{"blob":"sha256:aa","parent":-1,"annotations":{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","diffID":"sha256:bb","size":3,"createdAt":"2024-01-01T00:00:00Z"}},{"blob":"sha256:cc"}],
            "records":[{"layers":[{"layer":1,"createdAt":"2024-01-01T00:00:00Z"}],"digest":"sha256:dd","inputs":[[{"selector":"x","link":0}]]}]}"#;
        let config: CacheConfig = serde_json::from_str(text).unwrap();
        assert_eq!(config.layers[0].parent_index, -1);
        // BuildKit omits parent 0.
        assert_eq!(config.layers[1].parent_index, 0);
        assert_eq!(config.records[0].results[0].layer_index, 1);
        let diff = &config.layers[0].annotations.as_ref().unwrap().diff_id;
        assert_eq!(diff, "sha256:bb");
    }
}
