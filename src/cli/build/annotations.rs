//! Image annotations as buildx and BuildKit take them: the `--output`
//! attributes `annotation[-<level>][[<platform>]].<key>=<value>` and the
//! `--annotation [<level>[[<platform>]],…:]<key>=<value>` flag, parsed
//! into one [`Annotations`] set that says, for each platform's image,
//! what goes on its manifest and on its descriptor in the index, and
//! what goes on the index and on the index's descriptor.
//!
//! The rules are BuildKit's image exporter's:
//! - no level means the manifest; a platform selector is normalised
//!   (`linux/arm64/v8` is `linux/arm64`) and limits a manifest or
//!   manifest-descriptor annotation to that platform's image (a selector
//!   on an index level is accepted and has no effect);
//! - a multi-platform build refuses a selector naming a platform it did
//!   not build; a one-platform build makes no index, so it refuses index
//!   annotations and leaves selected ones out (BuildKit only applies the
//!   unselected ones to a lone image);
//! - Docker media types carry manifest annotations only;
//! - `--annotation` applies to every image output and wins over the
//!   output's own attribute for the same key, as buildx sets it last.
//!
//! Imports `crate::image::Platform` only.

use std::collections::BTreeMap;

use crate::image::platform::PlatformError;
use crate::image::Platform;

/// Where an annotation goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Each image manifest (the default).
    Manifest,
    /// Each manifest's descriptor: the index's entries, or `index.json`'s
    /// entry for a lone image.
    ManifestDescriptor,
    /// A multi-platform image's index.
    Index,
    /// `index.json`'s entry for that index.
    IndexDescriptor,
}

impl Level {
    fn parse(name: &str) -> Option<Level> {
        Some(match name {
            "manifest" => Level::Manifest,
            "manifest-descriptor" => Level::ManifestDescriptor,
            "index" => Level::Index,
            "index-descriptor" => Level::IndexDescriptor,
            _ => return None,
        })
    }

    fn is_index(self) -> bool {
        matches!(self, Level::Index | Level::IndexDescriptor)
    }
}

/// One annotation's destination and key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AnnotationKey {
    pub level: Level,
    /// The platform whose image alone gets it; `None` for all.
    pub platform: Option<Platform>,
    pub key: String,
}

/// Why an annotation was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnnotationError {
    #[error("unrecognized annotation type {0}")]
    UnknownLevel(String),
    #[error("invalid annotation {0:?}: expected [type[[platform]],…:]key=value")]
    FlagShape(String),
    #[error(
        "invalid annotation type {0:?}, expected type and optional platform in square brackets"
    )]
    FlagLevel(String),
    #[error("invalid annotation platform {selector:?}")]
    Platform {
        selector: String,
        #[source]
        source: PlatformError,
    },
    #[error("invalid annotation: no platform {0} found in source")]
    NoSuchPlatform(Platform),
    #[error("index annotations not supported for single platform export")]
    IndexForSinglePlatform,
    #[error("cannot export annotations with \"oci-mediatypes=false\"")]
    DockerMediaTypes,
}

/// Whether `c` may appear in a platform selector (BuildKit's character
/// class `[A-Za-z0-9_/-]`).
fn selector_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '/' | '-')
}

fn parse_platform(selector: &str) -> Result<Platform, AnnotationError> {
    selector
        .parse()
        .map_err(|source| AnnotationError::Platform {
            selector: selector.to_string(),
            source,
        })
}

/// Splits `<level>[<platform>]<rest>` where the selector is optional:
/// the level name, the selector and what follows; `None` when a `[`
/// opens no well-formed selector.
fn split_level(s: &str) -> Option<(&str, Option<&str>, &str)> {
    let end = s
        .find(|c: char| !(c.is_ascii_lowercase() || c == '-'))
        .unwrap_or(s.len());
    let (name, rest) = s.split_at(end);
    let Some(inner) = rest.strip_prefix('[') else {
        return Some((name, None, rest));
    };
    let close = inner.find(']')?;
    let selector = &inner[..close];
    if selector.is_empty() || !selector.chars().all(selector_char) {
        return None;
    }
    Some((name, Some(selector), &inner[close + 1..]))
}

/// An `--output` attribute name as an annotation: `None` when it is not
/// of the annotation form (BuildKit passes such attributes on), an error
/// when it is but names an unknown level or an invalid platform.
pub fn parse_attr(attr: &str) -> Option<Result<AnnotationKey, AnnotationError>> {
    let rest = attr.strip_prefix("annotation")?;
    let (name, rest) = match rest.strip_prefix('-') {
        Some(r) => {
            let (name, selector, tail) = split_level(r)?;
            if name.is_empty() {
                return None;
            }
            (name, (selector, tail))
        }
        None => {
            let (name, selector, tail) = split_level(rest)?;
            if !name.is_empty() {
                return None;
            }
            ("", (selector, tail))
        }
    };
    let (selector, tail) = rest;
    let key = tail.strip_prefix('.')?;
    if key.is_empty() || key.chars().any(char::is_whitespace) {
        return None;
    }
    Some(annotation_key(name, selector, key))
}

fn annotation_key(
    name: &str,
    selector: Option<&str>,
    key: &str,
) -> Result<AnnotationKey, AnnotationError> {
    let level = match name {
        "" => Level::Manifest,
        n => Level::parse(n).ok_or_else(|| AnnotationError::UnknownLevel(n.to_string()))?,
    };
    let platform = selector.map(parse_platform).transpose()?;
    Ok(AnnotationKey {
        level,
        platform,
        key: key.to_string(),
    })
}

/// One `--annotation` flag (its `KEY` and `VALUE` already split at the
/// first `=`): the keys it sets, one per level listed before the first
/// `:`. A selector on an index level is dropped, as buildx turns the
/// flag into an output attribute that has none.
pub fn parse_flag(key: &str) -> Result<Vec<AnnotationKey>, AnnotationError> {
    let Some((levels, name)) = key.split_once(':') else {
        return Ok(vec![AnnotationKey {
            level: Level::Manifest,
            platform: None,
            key: key.to_string(),
        }]);
    };
    if name.is_empty() {
        return Err(AnnotationError::FlagShape(key.to_string()));
    }
    levels
        .split(',')
        .map(|level| {
            let (lname, selector) = match split_level(level) {
                Some((n, s, "")) if !n.is_empty() => (n, s),
                _ => return Err(AnnotationError::FlagLevel(level.to_string())),
            };
            let mut k = annotation_key(lname, selector, name)?;
            if k.level.is_index() {
                k.platform = None;
            }
            Ok(k)
        })
        .collect()
}

type Map = BTreeMap<String, String>;

/// Every annotation an image output asks for, later ones winning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Annotations {
    entries: BTreeMap<AnnotationKey, String>,
}

impl Annotations {
    /// The annotations of an output's attributes, then of the
    /// `--annotation` flags (which win), each validated.
    pub fn parse<'a>(
        attrs: impl IntoIterator<Item = (&'a String, &'a String)>,
        flags: &[(String, String)],
    ) -> Result<Annotations, AnnotationError> {
        let mut set = Annotations::default();
        for (attr, value) in attrs {
            if let Some(key) = parse_attr(attr) {
                set.entries.insert(key?, value.clone());
            }
        }
        for (flag, value) in flags {
            for key in parse_flag(flag)? {
                set.entries.insert(key, value.clone());
            }
        }
        Ok(set)
    }

    /// Checks the set against what the export makes: `built` are the
    /// platforms of a multi-platform build, `None` for a lone image.
    pub fn check(
        &self,
        built: Option<&[Platform]>,
        oci_mediatypes: bool,
    ) -> Result<(), AnnotationError> {
        for key in self.entries.keys() {
            if let (Some(built), Some(p)) = (built, &key.platform) {
                if !built.contains(p) {
                    return Err(AnnotationError::NoSuchPlatform(p.clone()));
                }
            }
            if !oci_mediatypes && key.level != Level::Manifest {
                return Err(AnnotationError::DockerMediaTypes);
            }
        }
        if built.is_none() && self.entries.keys().any(|k| k.level.is_index()) {
            return Err(AnnotationError::IndexForSinglePlatform);
        }
        Ok(())
    }

    /// The annotations at `level` for `platform`'s image: the unselected
    /// ones, then those selecting `platform` (which win). `None` is a
    /// lone image, which gets the unselected ones only. Index levels
    /// ignore selectors.
    pub fn at(&self, level: Level, platform: Option<&Platform>) -> Map {
        let mut out = Map::new();
        let mut take = |wanted: Option<&Platform>| {
            for (k, v) in &self.entries {
                if k.level == level && (level.is_index() || k.platform.as_ref() == wanted) {
                    out.insert(k.key.clone(), v.clone());
                }
            }
        };
        // The unselected ones first, so that a platform's own win.
        take(None);
        if let Some(p) = platform.filter(|_| !level.is_index()) {
            take(Some(p));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    fn key(level: Level, platform: Option<&str>, key: &str) -> AnnotationKey {
        AnnotationKey {
            level,
            platform: platform.map(p),
            key: key.into(),
        }
    }

    #[test]
    fn attributes_parse_as_buildkit_reads_them() {
        let ok = |a: &str| parse_attr(a).unwrap().unwrap();
        assert_eq!(ok("annotation.a.b"), key(Level::Manifest, None, "a.b"));
        assert_eq!(ok("annotation-manifest.k"), key(Level::Manifest, None, "k"));
        assert_eq!(
            ok("annotation-manifest-descriptor.k"),
            key(Level::ManifestDescriptor, None, "k")
        );
        assert_eq!(ok("annotation-index.k"), key(Level::Index, None, "k"));
        assert_eq!(
            ok("annotation-index-descriptor.org.x"),
            key(Level::IndexDescriptor, None, "org.x")
        );
        assert_eq!(
            ok("annotation[linux/arm64].k"),
            key(Level::Manifest, Some("linux/arm64"), "k")
        );
        assert_eq!(
            ok("annotation-manifest-descriptor[linux/amd64].k"),
            key(Level::ManifestDescriptor, Some("linux/amd64"), "k")
        );
        // Selectors are normalised.
        assert_eq!(
            ok("annotation-manifest[linux/arm64/v8].k").platform,
            Some(p("linux/arm64"))
        );
        assert_eq!(
            ok("annotation[linux/arm].k").platform,
            Some(p("linux/arm/v7"))
        );
        // Not of the annotation form: left to the other attributes.
        for other in [
            "annotations.k",
            "annotation",
            "annotation.",
            "annotation-.k",
            "annotation[].k",
            "annotation[linux/amd64.k",
            "annotation[linux:amd64].k",
            "annotationx.k",
            "annotation-Index.k",
        ] {
            assert!(parse_attr(other).is_none(), "{other}");
        }
        // Of the form, but wrong.
        assert_eq!(
            parse_attr("annotation-manifests.k").unwrap(),
            Err(AnnotationError::UnknownLevel("manifests".into()))
        );
        assert!(matches!(
            parse_attr("annotation[linux/nope].k").unwrap(),
            Err(AnnotationError::Platform { .. })
        ));
    }

    #[test]
    fn flags_parse_as_buildx_reads_them() {
        assert_eq!(
            parse_flag("org.k").unwrap(),
            [key(Level::Manifest, None, "org.k")]
        );
        assert_eq!(
            parse_flag("index:k").unwrap(),
            [key(Level::Index, None, "k")]
        );
        assert_eq!(
            parse_flag("manifest[linux/amd64]:k").unwrap(),
            [key(Level::Manifest, Some("linux/amd64"), "k")]
        );
        assert_eq!(
            parse_flag("index,manifest-descriptor[linux/arm64/v8],index-descriptor:k").unwrap(),
            [
                key(Level::Index, None, "k"),
                key(Level::ManifestDescriptor, Some("linux/arm64"), "k"),
                key(Level::IndexDescriptor, None, "k"),
            ]
        );
        // An index level has no platform.
        assert_eq!(
            parse_flag("index[linux/amd64]:k").unwrap(),
            [key(Level::Index, None, "k")]
        );
        // Only the first colon separates.
        assert_eq!(
            parse_flag("manifest:a:b").unwrap(),
            [key(Level::Manifest, None, "a:b")]
        );
        assert_eq!(
            parse_flag("layer:k"),
            Err(AnnotationError::UnknownLevel("layer".into()))
        );
        for bad in [
            "Index:k",
            "[linux/amd64]:k",
            "index,:k",
            "manifest[x:k",
            "a.b:k",
        ] {
            assert!(
                matches!(parse_flag(bad), Err(AnnotationError::FlagLevel(_))),
                "{bad}: {:?}",
                parse_flag(bad)
            );
        }
        assert!(matches!(
            parse_flag("manifest[linux/nope]:k"),
            Err(AnnotationError::Platform { .. })
        ));
        assert!(matches!(
            parse_flag("index:"),
            Err(AnnotationError::FlagShape(_))
        ));
    }

    #[test]
    fn each_image_gets_its_own_and_the_shared_ones() {
        let attrs: BTreeMap<String, String> = [
            ("annotation.shared", "all"),
            ("annotation[linux/arm64].only", "arm"),
            ("annotation-manifest[linux/amd64].shared", "amd"),
            ("annotation-manifest-descriptor[linux/arm64].d", "arm-desc"),
            ("annotation-index[linux/amd64].i", "idx"),
            ("name", "x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let flags = [("index-descriptor:i".to_string(), "top".to_string())];
        let set = Annotations::parse(&attrs, &flags).unwrap();
        let map = |pairs: &[(&str, &str)]| -> Map {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let (amd, arm) = (p("linux/amd64"), p("linux/arm64"));
        assert_eq!(
            set.at(Level::Manifest, Some(&amd)),
            map(&[("shared", "amd")])
        );
        assert_eq!(
            set.at(Level::Manifest, Some(&arm)),
            map(&[("only", "arm"), ("shared", "all")])
        );
        assert_eq!(set.at(Level::Manifest, None), map(&[("shared", "all")]));
        assert_eq!(
            set.at(Level::ManifestDescriptor, Some(&arm)),
            map(&[("d", "arm-desc")])
        );
        assert!(set.at(Level::ManifestDescriptor, Some(&amd)).is_empty());
        assert_eq!(set.at(Level::Index, None), map(&[("i", "idx")]));
        assert_eq!(set.at(Level::IndexDescriptor, None), map(&[("i", "top")]));

        let both = [amd.clone(), arm.clone()];
        assert_eq!(set.check(Some(&both), true), Ok(()));
        assert_eq!(
            set.check(Some(&[amd.clone(), p("linux/s390x")]), true),
            Err(AnnotationError::NoSuchPlatform(arm.clone()))
        );
        assert_eq!(
            set.check(None, true),
            Err(AnnotationError::IndexForSinglePlatform)
        );
        assert_eq!(
            set.check(Some(&both), false),
            Err(AnnotationError::DockerMediaTypes)
        );
        // A flag wins over the attribute it names.
        let flags = [("manifest:shared".to_string(), "flag".to_string())];
        let set = Annotations::parse(&attrs, &flags).unwrap();
        assert_eq!(set.at(Level::Manifest, None), map(&[("shared", "flag")]));
        // Docker media types take manifest annotations.
        let flags = [("k".to_string(), "v".to_string())];
        let set = Annotations::parse(&BTreeMap::new(), &flags).unwrap();
        assert_eq!(set.check(None, false), Ok(()));
    }
}
